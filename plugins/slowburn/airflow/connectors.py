"""Airflow hooks for the vendor clients, the Connection resolver for API sources, and the write-back operator.

A Connection gives the client its base URL and its credentials; secrets live only there (password or
extra, which Airflow encrypts), never in DAG code or the sources file, and are blanked from every log line:

* host: the API's base URL with its scheme (https://api.hubapi.com, https://<my-domain>.my.salesforce.com,
  https://us6.api.mailchimp.com/3.0); a test points it at http://127.0.0.1:<port>;
* HubSpot: password = private-app token; or OAuth: extra client_id, client_secret, refresh_token;
* Salesforce: extra.auth = token (password = access token / session id), refresh_token (password = refresh
  token, extra client_id [, client_secret], login_url) or jwt (login = username, password or extra.private_key
  = the PEM key, extra client_id = consumer key, login_url); host may be left empty for the OAuth flows
  (the token endpoint names the instance);
* Mailchimp: password = API key; or extra.auth = oauth with password = OAuth access token;
* extra also takes client options (max_requests, per_seconds, verify, quota_reserve, ...).

Each hook has its own connection type (slowburn_hubspot, slowburn_salesforce, slowburn_mailchimp) whose
form the provider declares (slowburn.airflow.provider_info); a hook reads any Connection by id, so the
`http` Connections made before those types existed keep working.

Once this module is loaded, slowburn.sources.http.credentials_for() asks resolve_credentials() below, so
`kind: hubspot | salesforce | mailchimp` sources in the sources file read their Connection when the
nightly extract runs inside Airflow (dags/slowburn_nightly.py imports this module). Everything else
(clients, slowburn.sources, pandas) is imported lazily: parsing a DAG file that imports this stays cheap.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from airflow.sdk import BaseHook, BaseOperator

log = logging.getLogger(__name__)


def resolve_credentials(conn_id: str):
    """slowburn.sources.http.Credentials from the Airflow Connection `conn_id`, or None when it is not defined."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from slowburn.sources.http import connection_credentials

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:  # outside a task (no API server to ask): fall back to the environment
        log.debug("connection %s not readable through Airflow (%s); trying the environment", conn_id,
                  type(exc).__name__)
        return None
    return connection_credentials(conn.host, conn.password, conn.extra_dejson, login=conn.login, port=conn.port,
                                  schema=conn.schema)


class _VendorHook(BaseHook):
    conn_name_attr = "conn_id"
    default_conn_name = ""
    conn_type = ""
    hook_name = ""

    def __init__(self, conn_id: str | None = None, **client_options):
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        self.client_options = client_options
        self._client = None

    def credentials(self):
        from slowburn.sources.http import connection_credentials

        conn = self.get_connection(self.conn_id)
        return connection_credentials(conn.host, conn.password, conn.extra_dejson, login=conn.login, port=conn.port,
                                      schema=conn.schema)

    def _options(self, creds, allowed: tuple[str, ...]) -> dict:
        # A form field left empty may be saved as null or "": the client's default applies then.
        opts = {k: creds.extra[k] for k in allowed if creds.extra.get(k) not in (None, "")}
        opts.update(self.client_options)
        return opts

    def get_conn(self):
        if self._client is None:
            self._client = self.build_client()
        return self._client

    def build_client(self):  # pragma: no cover - overridden
        raise NotImplementedError


class HubSpotHook(_VendorHook):
    """A slowburn.sources.hubspot.HubSpotClient from the `hubspot_default` Connection."""
    default_conn_name = "hubspot_default"
    conn_type = "slowburn_hubspot"
    hook_name = "slowburn HubSpot"

    def build_client(self):
        from slowburn.sources.hubspot import CLIENT_OPTIONS, DEFAULT_BASE_URL, HubSpotAuth, HubSpotClient

        creds = self.credentials()
        return HubSpotClient(creds.base_url or DEFAULT_BASE_URL, auth=HubSpotAuth.from_credentials(creds),
                             **self._options(creds, CLIENT_OPTIONS))


class SalesforceHook(_VendorHook):
    """A slowburn.sources.salesforce.SalesforceClient (over simple-salesforce) from `salesforce_default`.

    host is the instance URL; extra.auth picks the login flow (token, refresh_token, jwt; see above).
    """
    default_conn_name = "salesforce_default"
    conn_type = "slowburn_salesforce"
    hook_name = "slowburn Salesforce"

    def build_client(self):
        from slowburn.sources.salesforce import CLIENT_OPTIONS, SalesforceAuth, SalesforceClient

        creds = self.credentials()
        return SalesforceClient(creds.base_url or creds.extra.get("instance_url"),
                                auth=SalesforceAuth.from_credentials(creds), **self._options(creds, CLIENT_OPTIONS))


class MailchimpHook(_VendorHook):
    """A slowburn.sources.mailchimp.MailchimpClient from `mailchimp_default`; extra.list_id names the audience."""
    default_conn_name = "mailchimp_default"
    conn_type = "slowburn_mailchimp"
    hook_name = "slowburn Mailchimp"

    def build_client(self):
        from slowburn.sources.mailchimp import CLIENT_OPTIONS, METADATA_URL, MailchimpAuth, MailchimpClient

        creds = self.credentials()
        auth = MailchimpAuth.from_credentials(creds)
        return MailchimpClient(creds.base_url or auth.base_url(metadata_url=creds.extra.get("metadata_url",
                                                                                            METADATA_URL)),
                               auth=auth, **self._options(creds, CLIENT_OPTIONS))

    def list_id(self) -> str | None:
        return self.credentials().extra.get("list_id")


HOOKS = {"salesforce": SalesforceHook, "hubspot": HubSpotHook, "mailchimp": MailchimpHook}


class SlowburnWritebackOperator(BaseOperator):
    """Write scores, queues, owners, tasks and nurture tags back to the vendors (slowburn.writeback).

    Targets whose Connection is not defined are skipped (and reported). `dry_run` writes the plan to
    <home>/writeback/ and sends nothing. Pushes a small report to XCom; fails after writing everything it
    could when some records were refused, naming them.
    """

    template_fields = ("dry_run", "targets")
    ui_color = "#e9967a"

    def __init__(self, *, dry_run=False, targets=None, config_path: str | None = None,
                 warehouse_conn_id: str = "slowburn_warehouse", conn_ids: dict | None = None,
                 home: str | None = None, **kwargs):
        kwargs.setdefault("task_id", "writeback")
        super().__init__(**kwargs)
        self.dry_run = dry_run
        self.targets = targets
        self.config_path = config_path
        self.warehouse_conn_id = warehouse_conn_id
        self.conn_ids = conn_ids or {}
        self.home = home

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowNotFoundException

        from slowburn.airflow.hooks import SlowburnWarehouseHook
        from slowburn.writeback import (HubSpotSink, MailchimpSink, SalesforceSink, WritebackConfig, WritebackFailed,
                                        run_writeback)

        cfg = WritebackConfig.load(self.config_path or os.environ.get("SLOWBURN_WRITEBACK"))
        targets = _as_list(self.targets) or list(cfg.targets)
        dry_run = _as_bool(self.dry_run)
        sinks, clients = {}, []
        for target in targets:
            hook = HOOKS[target](self.conn_ids.get(target))
            try:
                client = hook.get_conn()
            except AirflowNotFoundException:
                self.log.info("write-back: connection %s is not defined; skipping %s", hook.conn_id, target)
                continue
            clients.append(client)
            if target == "salesforce":
                sinks[target] = SalesforceSink(client, cfg)
            elif target == "hubspot":
                sinks[target] = HubSpotSink(client, cfg)
            else:
                list_id = cfg.mailchimp_list_id or hook.list_id()
                if not list_id:
                    self.log.warning("write-back: no Mailchimp list_id (config or connection extra); skipping")
                    continue
                cfg = WritebackConfig.from_dict({**_config_dict(cfg), "mailchimp_list_id": list_id})
                sinks[target] = MailchimpSink(client, list_id)
        cfg = WritebackConfig.from_dict({**_config_dict(cfg), "targets": tuple(sinks) or tuple(targets)})
        home = Path(self.home or os.environ.get("SLOWBURN_HOME", ".slowburn"))
        try:
            report = run_writeback(SlowburnWarehouseHook(self.warehouse_conn_id).sqlalchemy_url(), sinks, cfg,
                                   dry_run=dry_run, plan_dir=home / "writeback")
        finally:
            for client in clients:
                client.close()
        result = report.as_dict()
        self.log.info("write-back: %s", {k: v for k, v in result.items() if k not in ("sample", "failed")})
        if report.failed:
            lines = "\n".join(f"{t} {k}: {e}" for t, k, e in report.failed[:20])
            raise WritebackFailed(f"write-back {report.run_id}: {len(report.failed)} record(s) refused "
                                  f"({report.sent} written and logged):\n{lines}")
        return json.loads(json.dumps(result, default=str))


def _config_dict(cfg) -> dict:
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}


def _as_list(value):
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import ast
            return [str(v) for v in ast.literal_eval(text)]
        return [v.strip() for v in text.split(",") if v.strip()]
    return list(value)


def _as_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
