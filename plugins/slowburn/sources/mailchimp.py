"""Mailchimp Marketing API client: read an audience's members, upsert members and their segment tags.

Reading: ``GET /3.0/lists/{list_id}/members`` 1,000 at a time by offset, sorted by ``last_changed`` and
filtered with ``since_last_changed`` for incremental pulls (with an overlap, deduped on member id).
Each member row carries ``opted_out`` ("true" when unsubscribed or cleaned, i.e. bounced) and
``event`` (unsubscribe / email_bounce), so the audience can be a leads source whose opt-outs reach
the golden record, and a touches source of unsubscribes and bounces.

Writing
* ``PUT /3.0/lists/{list_id}/members/{md5(lowercase email)}`` with ``status_if_new`` only: an existing
  member's status is never touched, so an unsubscribed or bounced (cleaned) member is never
  re-subscribed. The client refuses any body that sets ``status`` to subscribed or pending.
* tags through ``POST .../members/{hash}/tags`` with ``{"tags": [{"name", "status": active|inactive}]}``.
* more than ``batch_threshold`` operations go through ``POST /3.0/batches`` (``batch_size`` operations per
  batch, several submitted before polling), polled until finished; per-operation results come from each
  batch's response archive, fetched without our credentials.
* fewer go one by one on ``concurrency`` connections (Mailchimp allows 10 at once).

Logging in: an API key (HTTP Basic, any user name; its ``-us6`` suffix names the data centre), or an OAuth
access token (sent as a Bearer token; Mailchimp's OAuth tokens do not expire), whose data centre comes from
the connection's host or from ``https://login.mailchimp.com/oauth2/metadata``.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
import requests

from slowburn.sources.http import (ApiSession, ConnectorError, RateLimiter, RenewableToken, chunked, credentials_for,
                                   redact, register_secret)

log = logging.getLogger(__name__)

PAGE = 1000
METADATA_URL = "https://login.mailchimp.com/oauth2/metadata"
CLIENT_OPTIONS = ("max_requests", "per_seconds", "concurrency", "batch_threshold", "batch_size", "poll_interval",
                  "max_retries", "backoff", "verify")
STATUS_IF_NEW = ("subscribed", "pending", "transactional", "unsubscribed")
NEVER_EMAIL = ("unsubscribed", "cleaned")
MEMBER_FIELDS = ("id", "email_address", "status", "last_changed", "timestamp_opt", "timestamp_signup",
                 "unsubscribe_reason", "email_type", "source", "merge_fields", "stats", "tags", "list_id")


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lowercased address."""
    return hashlib.md5(str(email).strip().lower().encode("utf-8")).hexdigest()


def parse_error(resp: requests.Response) -> tuple[str, str | None]:
    """Mailchimp's problem body: {"type", "title", "status", "detail", "instance", "errors": [{field, message}]}."""
    body = resp.json()
    message = f"{body.get('title', '')}: {body.get('detail', '')}".strip(": ")
    fields = [f"{e.get('field') or '?'}: {e.get('message', '')}" for e in body.get("errors") or []]
    if fields:
        message += f" [{'; '.join(fields)}]"
    if body.get("instance"):
        message += f" (instance {body['instance']})"
    return message, body.get("title")


def default_base_url(api_key: str | None) -> str | None:
    """https://<dc>.api.mailchimp.com/3.0 from a key like 'xxxx-us6'."""
    if api_key and "-" in api_key:
        return f"https://{api_key.rsplit('-', 1)[1]}.api.mailchimp.com/3.0"
    return None


@dataclass(frozen=True)
class MailchimpAuth:
    """An API key, or an OAuth access token. repr() shows neither."""
    api_key: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)

    def __post_init__(self):
        if bool(self.api_key) == bool(self.access_token):
            raise ConnectorError("mailchimp auth: give either an API key or an OAuth access token", vendor="mailchimp")
        register_secret(self.api_key)
        register_secret(self.access_token)

    @classmethod
    def from_credentials(cls, creds) -> "MailchimpAuth":
        """password: the API key; with extra.auth = "oauth" (or extra.access_token), an OAuth access token."""
        extra = creds.extra
        if extra.get("auth") == "oauth" or extra.get("access_token"):
            return cls(access_token=extra.get("access_token") or creds.token)
        return cls(api_key=creds.token)

    def base_url(self, *, metadata_url: str = METADATA_URL, verify: bool | str = True) -> str | None:
        if self.api_key:
            return default_base_url(self.api_key)
        try:
            resp = requests.get(metadata_url, headers={"Authorization": f"OAuth {self.access_token}",
                                                       "Accept": "application/json"}, timeout=(10, 30), verify=verify)
            endpoint = resp.json().get("api_endpoint") if resp.status_code == 200 else None
        except (requests.RequestException, ValueError) as exc:
            raise ConnectorError(f"mailchimp: could not ask {metadata_url} for the account's data centre "
                                 f"({type(exc).__name__}); set the connection's host instead",
                                 vendor="mailchimp") from None
        if not endpoint:
            raise ConnectorError(f"mailchimp: {metadata_url} answered HTTP {resp.status_code} without api_endpoint; "
                                 f"check the OAuth token, or set the connection's host", vendor="mailchimp",
                                 status=resp.status_code)
        return f"{endpoint.rstrip('/')}/3.0"


@dataclass
class Outcome:
    ok: dict[str, dict] = field(default_factory=dict)     # subscriber hash -> member (or {})
    errors: dict[str, str] = field(default_factory=dict)  # subscriber hash -> error naming the field


class MailchimpClient:
    vendor = "mailchimp"

    def __init__(self, base_url: str, api_key: str | None = None, *, auth: MailchimpAuth | None = None,
                 max_requests: float = 20, per_seconds: float = 1.0,
                 concurrency: int = 5, batch_threshold: int = 1000, batch_size: int = 500,
                 poll_interval: float = 2.0, poll_timeout: float = 3600.0, timeout=(10.0, 120.0),
                 max_retries: int = 5, backoff: float = 0.5, verify: bool | str = True):
        self.limiter = RateLimiter(max_requests, per_seconds)
        self.concurrency = max(1, min(int(concurrency), 10))
        self.batch_threshold, self.batch_size = batch_threshold, batch_size
        self.poll_interval, self.poll_timeout = poll_interval, poll_timeout
        self.auth = auth or MailchimpAuth(api_key=api_key)
        bearer = RenewableToken(None, self.auth.access_token, vendor=self.vendor) if self.auth.access_token else None
        self.session = ApiSession(base_url, vendor=self.vendor, token=self.auth.api_key, basic_user="slowburn",
                                  token_provider=bearer, timeout=timeout, max_retries=max_retries, backoff=backoff,
                                  rate_limiter=self.limiter, verify=verify, pool_size=self.concurrency + 2,
                                  error_parser=parse_error)
        # Batch result archives live on a storage host: fetched without our credentials.
        self.archive_session = ApiSession(base_url, vendor=self.vendor, timeout=timeout, max_retries=max_retries,
                                          backoff=backoff, verify=verify)

    @classmethod
    def from_connection(cls, conn_id: str = "mailchimp_default", base_url: str | None = None, **kwargs):
        creds = credentials_for(conn_id)
        extra = creds.extra
        opts = {k: extra[k] for k in CLIENT_OPTIONS if k in extra}
        opts.update(kwargs)
        auth = MailchimpAuth.from_credentials(creds)
        url = base_url or creds.base_url or auth.base_url(metadata_url=extra.get("metadata_url", METADATA_URL),
                                                          verify=opts.get("verify", True))
        if not url:
            raise ConnectorError(f"mailchimp connection {conn_id!r}: no host and the API key has no data centre "
                                 f"suffix (like -us6); set the host to https://<dc>.api.mailchimp.com/3.0")
        return cls(url, auth=auth, **opts)

    def __repr__(self) -> str:
        return f"MailchimpClient({self.session.base_url}, {self.limiter})"

    def close(self) -> None:
        self.session.close()
        self.archive_session.close()

    # ------------------------------------------------------------------------------------------ reading
    def _paged(self, path: str, key: str, params: dict, what: str):
        """Every item of an offset-paged collection (`key` in each page). An empty page ends it, whatever
        total_items says."""
        params = {"count": PAGE, **params, "offset": 0}
        while True:
            page = self.session.json("GET", path, params=params, what=what) or {}
            items = page.get(key) or []
            yield from items
            params["offset"] += len(items)
            try:
                total = int(page.get("total_items") or 0)
            except (TypeError, ValueError):
                total = 0
            if not items or params["offset"] >= total:
                return

    def iter_members(self, list_id: str, *, since_last_changed: pd.Timestamp | None = None,
                     status: str | None = None, count: int = PAGE):
        params = {"count": count, "sort_field": "last_changed", "sort_dir": "ASC",
                  "fields": "total_items," + ",".join(f"members.{f}" for f in MEMBER_FIELDS)}
        if since_last_changed is not None:
            params["since_last_changed"] = _iso(since_last_changed)
        if status:
            params["status"] = status
        return self._paged(f"/lists/{list_id}/members", "members", params, f"list members of {list_id}")

    def iter_sent_campaigns(self, list_id: str | None = None, *, since_send_time: pd.Timestamp | None = None):
        """Sent campaigns ({id, send_time, settings.title, ...}), oldest first, optionally to one audience."""
        params = {"status": "sent", "sort_field": "send_time", "sort_dir": "ASC",
                  "fields": "total_items,campaigns.id,campaigns.send_time,campaigns.settings.title,"
                            "campaigns.settings.subject_line,campaigns.recipients.list_id"}
        if list_id:
            params["list_id"] = list_id
        if since_send_time is not None:
            params["since_send_time"] = _iso(since_send_time)
        return self._paged("/campaigns", "campaigns", params, "list sent campaigns")

    def iter_email_activity(self, campaign_id: str, *, since: pd.Timestamp | None = None):
        """Per member of a campaign: {email_id, email_address, activity: [{action, timestamp, url, type}]}."""
        params = {"fields": "total_items,emails.email_id,emails.email_address,emails.list_id,emails.activity"}
        if since is not None:
            params["since"] = _iso(since)
        return self._paged(f"/reports/{campaign_id}/email-activity", "emails", params,
                           f"email activity of campaign {campaign_id}")

    def iter_unsubscribes(self, campaign_id: str):
        """Members who unsubscribed through a campaign: {email_id, email_address, timestamp, reason}."""
        return self._paged(f"/reports/{campaign_id}/unsubscribed", "unsubscribes", {},
                           f"unsubscribes of campaign {campaign_id}")

    def read_frame(self, list_id: str, *, since: pd.Timestamp | None = None,
                   overlap_seconds: float = 300.0) -> pd.DataFrame:
        start = None if since is None else pd.Timestamp(since) - pd.Timedelta(seconds=overlap_seconds)
        rows = [_flatten(m) for m in self.iter_members(list_id, since_last_changed=start)]
        frame = pd.DataFrame.from_records(rows, columns=_COLUMNS)
        if len(frame):
            stamp = pd.to_datetime(frame["last_changed"], utc=True, errors="coerce", format="ISO8601")
            frame = (frame.assign(_s=stamp).sort_values("_s", kind="stable", na_position="first")
                     .drop_duplicates("id", keep="last").drop(columns="_s").reset_index(drop=True))
        log.info("mailchimp list %s: %d members (since %s)", list_id, len(frame), since)
        return frame.astype("string")

    # ------------------------------------------------------------------------------------------ writing
    def member_operation(self, list_id: str, member: dict) -> dict:
        """The PUT for one member, checked: status_if_new only, never a status that subscribes."""
        email = member.get("email_address")
        if not email:
            raise ConnectorError("mailchimp upsert: a member without email_address", vendor=self.vendor,
                                 field="email_address")
        if member.get("status") in ("subscribed", "pending"):
            raise ConnectorError(f"mailchimp upsert {subscriber_hash(email)}: refusing to set status "
                                 f"{member['status']!r}; only status_if_new may subscribe, and only new members",
                                 vendor=self.vendor, record=subscriber_hash(email), field="status")
        if member.get("status_if_new", "subscribed") not in STATUS_IF_NEW:
            raise ConnectorError(f"mailchimp upsert {subscriber_hash(email)}: status_if_new "
                                 f"{member.get('status_if_new')!r} is not one of {STATUS_IF_NEW}",
                                 vendor=self.vendor, record=subscriber_hash(email), field="status_if_new")
        body = {"email_address": email, "status_if_new": member.get("status_if_new", "subscribed")}
        for key in ("merge_fields", "email_type", "language", "status"):
            if member.get(key) is not None:
                body[key] = member[key]
        return {"method": "PUT", "path": f"/lists/{list_id}/members/{subscriber_hash(email)}",
                "operation_id": subscriber_hash(email), "body": body}

    def upsert_members(self, list_id: str, members: list[dict]) -> Outcome:
        return self.run([self.member_operation(list_id, m) for m in members])

    def tag_operation(self, list_id: str, member_hash: str, tags: list[dict]) -> dict:
        for tag in tags:
            if tag.get("status") not in ("active", "inactive") or not tag.get("name"):
                raise ConnectorError(f"mailchimp tags {member_hash}: each tag needs a name and status "
                                     f"active|inactive, got {tag!r}", vendor=self.vendor, record=member_hash,
                                     field="tags")
        return {"method": "POST", "path": f"/lists/{list_id}/members/{member_hash}/tags",
                "operation_id": member_hash, "body": {"tags": tags, "is_syncing": True}}

    def unsubscribe_operation(self, list_id: str, member_hash: str) -> dict:
        return {"method": "PATCH", "path": f"/lists/{list_id}/members/{member_hash}", "operation_id": member_hash,
                "body": {"status": "unsubscribed"}}

    def run(self, operations: list[dict]) -> Outcome:
        """Send operations ({method, path, operation_id, body}); through /batches past the threshold."""
        if len(operations) > self.batch_threshold:
            return self.run_batch(operations)
        return self.run_direct(operations)

    def run_direct(self, operations: list[dict]) -> Outcome:
        outcome = Outcome()

        def one(op):
            resp = self.session.request(op["method"], op["path"], json=op["body"])
            return op, resp

        if self.concurrency == 1 or len(operations) <= 1:
            results = map(one, operations)
        else:
            pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="mailchimp")
            results = pool.map(one, operations)
        try:
            for op, resp in results:
                self._record(outcome, op, resp.status_code, resp)
        finally:
            if self.concurrency > 1 and len(operations) > 1:
                pool.shutdown(wait=True, cancel_futures=True)
        return outcome

    def _record(self, outcome: Outcome, op: dict, status: int, resp_or_body) -> None:
        key = op["operation_id"]
        if 200 <= status < 300:
            body = resp_or_body if isinstance(resp_or_body, dict) else _json_or_empty(resp_or_body)
            outcome.ok[key] = body
            return
        if isinstance(resp_or_body, requests.Response):
            if status in (401, 403) or (status == 404 and op["method"] == "PUT") or status == 429 or status >= 500:
                raise self.session.error(resp_or_body, f"{op['method']} {op['path']}", record=key)
            message, _ = parse_error(resp_or_body) if _json_or_empty(resp_or_body) else (resp_or_body.text, None)
        else:
            message, _ = _problem(resp_or_body)
        outcome.errors[key] = redact(f"mailchimp {op['method']} {op['path']} (member {key}): HTTP {status}: {message}")

    def run_batch(self, operations: list[dict]) -> Outcome:
        """``POST /batches`` of at most `batch_size` operations each, all submitted before any is polled (Mailchimp
        runs up to 500 pending batches), then waited for; per-operation outcomes come from each batch's archive."""
        wire = [{"method": op["method"], "path": op["path"], "operation_id": op["operation_id"],
                 "body": json.dumps(op["body"], separators=(",", ":"))} for op in operations]
        submitted = []
        for chunk, ops in zip(chunked(wire, self.batch_size), chunked(operations, self.batch_size)):
            submitted.append((self.submit_batch(chunk), ops))
        outcome = Outcome()
        deadline = time.monotonic() + self.poll_timeout
        waiting = list(submitted)
        while waiting:
            still = []
            for batch, ops in waiting:
                if batch.get("status") != "finished":
                    batch = self.batch_status(batch["id"])
                if batch.get("status") == "finished":
                    self._collect(batch, ops, outcome)
                else:
                    still.append((batch, ops))
            waiting = still
            if waiting:
                if time.monotonic() > deadline:
                    raise ConnectorError(f"mailchimp batches {[b['id'] for b, _ in waiting]}: not finished after "
                                         f"{self.poll_timeout:.0f} s; the next run resends what is not logged",
                                         vendor=self.vendor, retryable=True)
                time.sleep(self.poll_interval)
        return outcome

    def submit_batch(self, wire: list[dict]) -> dict:
        """POST /batches with operations whose body is already a JSON string."""
        return self.session.json("POST", "/batches", json={"operations": wire}, what="create batch")

    def batch_status(self, batch_id: str) -> dict:
        return self.session.json("GET", f"/batches/{batch_id}", what=f"batch {batch_id} status")

    def _collect(self, batch: dict, operations: list[dict], outcome: Outcome) -> None:
        batch_id = batch["id"]
        results = self._batch_results(batch) if batch.get("response_body_url") else {}
        by_id = {op["operation_id"]: op for op in operations}
        done: set[str] = set()
        for op_id, (status, body) in results.items():
            if op_id in by_id:
                self._record(outcome, by_id[op_id], status, body)
                done.add(op_id)
        missing = [k for k in by_id if k not in done]
        if missing and int(batch.get("errored_operations", 0)) == 0 and not results:
            for k in missing:  # no archive but no errors: every operation succeeded
                outcome.ok[k] = {}
        else:
            for k in missing:
                outcome.errors[k] = f"mailchimp batch {batch_id}: no result for operation {k}"
        log.info("mailchimp batch %s: %d operations, %s errored", batch_id, len(operations),
                 batch.get("errored_operations", "?"))

    def _batch_results(self, batch: dict) -> dict[str, tuple[int, dict]]:
        resp = self.archive_session.call("GET", batch["response_body_url"], what=f"batch {batch['id']} results")
        out: dict[str, tuple[int, dict]] = {}
        with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                for item in json.loads(tar.extractfile(member).read().decode("utf-8")):
                    try:
                        body = json.loads(item.get("response") or "{}")
                    except ValueError:
                        body = {"detail": str(item.get("response"))[:300]}
                    out[str(item.get("operation_id"))] = (int(item.get("status_code", 0)), body)
        return out


def _iso(stamp) -> str:
    """Mailchimp's time format for filters: 2015-10-21T15:41:36+00:00 (UTC)."""
    t = pd.Timestamp(stamp)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _problem(body: dict) -> tuple[str, str | None]:
    message = f"{body.get('title', '')}: {body.get('detail', '')}".strip(": ")
    fields = [f"{e.get('field') or '?'}: {e.get('message', '')}" for e in body.get("errors") or []]
    return (message + (f" [{'; '.join(fields)}]" if fields else "")), body.get("title")


def _json_or_empty(resp: requests.Response) -> dict:
    if resp.status_code == 204 or not resp.content:
        return {}
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


_COLUMNS = ["id", "email_address", "status", "first_name", "last_name", "last_changed", "timestamp_opt",
            "timestamp_signup", "unsubscribe_reason", "source", "avg_open_rate", "avg_click_rate", "tags",
            "opted_out", "event"]


def _flatten(m: dict) -> dict:
    merge = m.get("merge_fields") or {}
    stats = m.get("stats") or {}
    status = m.get("status")
    return {"id": m.get("id"), "email_address": m.get("email_address"), "status": status,
            "first_name": merge.get("FNAME") or None, "last_name": merge.get("LNAME") or None,
            "last_changed": m.get("last_changed"), "timestamp_opt": m.get("timestamp_opt") or None,
            "timestamp_signup": m.get("timestamp_signup") or None,
            "unsubscribe_reason": m.get("unsubscribe_reason") or None, "source": m.get("source"),
            "avg_open_rate": stats.get("avg_open_rate"), "avg_click_rate": stats.get("avg_click_rate"),
            "tags": "|".join(t.get("name", "") for t in m.get("tags") or []) or None,
            "opted_out": "true" if status in NEVER_EMAIL else "false",
            "event": {"unsubscribed": "unsubscribe", "cleaned": "email_bounce"}.get(status)}


def read_mailchimp_source(cfg, since) -> pd.DataFrame:
    """A `kind: mailchimp` source: the audience `list_id`; for entity touches only unsubscribes and bounces."""
    from slowburn.sources.hubspot import _since, rate_limit_options

    client = MailchimpClient.from_connection(cfg.connection or "mailchimp_default", base_url=cfg.url,
                                             **rate_limit_options(cfg))
    try:
        frame = client.read_frame(cfg.list_id, since=_since(since), overlap_seconds=cfg.overlap_seconds)
    finally:
        client.close()
    if cfg.entity == "touches":
        frame = frame[frame["event"].notna()].reset_index(drop=True)
    return frame
