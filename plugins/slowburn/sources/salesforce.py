"""Salesforce client over simple-salesforce: SOQL reads on SystemModstamp, sObject Collections and
Bulk API 2.0 writes.

simple-salesforce builds every URL and maps Salesforce's errors; it is handed an ApiSession, so its
calls get our timeouts, retries with backoff (5xx, connection errors, 429 with Retry-After) and rate
limit, and the session id never reaches a log line or an error message.

Reading: ``SELECT <fields> FROM <object> WHERE SystemModstamp >= <since - overlap> ORDER BY SystemModstamp``,
following ``nextRecordsUrl`` to the end; rows are deduped on Id keeping the newest. Relationship fields
(``Who.Email``) are flattened to dotted columns. Lead, Contact, Task and Event all read this way.

Writing
* updates by Id: ``PATCH /composite/sobjects`` (at most 200 records a call, ``allOrNone: false``, mixed
  Lead and Contact records allowed);
* upserts by an external id field (follow-up and flag Tasks, keyed so a re-send never doubles them):
  ``PATCH /composite/sobjects/{SObject}/{ExternalIdField}``, 200 a call;
* more than ``bulk_threshold`` (10,000) rows of one kind go through a Bulk API 2.0 ingest job (create, PUT the
  CSV, UploadComplete, poll), driven over the same session;
  A Bulk CSV cannot say "null" with an empty cell (Salesforce leaves the field unchanged), so a field
  cleared to None is written as ``#N/A``, which sets it to null. After a job, failedResults and
  unprocessedrecords (rows the job never reached, e.g. it was aborted or failed) are read, and each such
  row is reported with its key.
Per-record failures name the record, the field(s) and Salesforce's status code.

Logging in (:class:`SalesforceAuth`): a ready access token, the OAuth 2.0 refresh-token flow or the JWT
bearer flow (a connected app's certificate key), against ``<login_url>/services/oauth2/token``. With the
last two, a 401 INVALID_SESSION_ID mid-run (the session expired) logs in again once and resends the
request; the token endpoint's ``instance_url`` is used when the connection names no host.

Daily API quota: every answer's ``Sforce-Limit-Info: api-usage=N/M`` header is tracked, and no request is
sent once fewer than ``quota_reserve`` calls are left in the org's 24-hour allowance (a fraction of M when
below 1); the ConnectorError says how many were used and how to go on.
"""
from __future__ import annotations

import csv
import io
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import pandas as pd
import requests

from slowburn.sources.http import (ApiSession, ConnectorError, RateLimiter, RenewableToken, chunked, credentials_for,
                                   oauth_token_request, register_secret)

log = logging.getLogger(__name__)

API_VERSION = "59.0"
COLLECTION_LIMIT = 200
BULK_THRESHOLD = 10_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
ID_PREFIXES = {"00Q": "Lead", "003": "Contact", "00T": "Task", "00U": "Event", "005": "User", "001": "Account"}
BULK_NULL = "#N/A"        # Bulk API 2.0: the cell value that sets a field to null (an empty cell changes nothing)
LOGIN_URL = "https://login.salesforce.com"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_API_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


@dataclass(frozen=True)
class SalesforceAuth:
    """How slowburn logs in to Salesforce. `flow`: token (a ready access token / session id; it cannot be
    renewed), refresh_token (OAuth refresh-token flow) or jwt (JWT bearer flow: `client_id` is the connected
    app's consumer key, `username` the integration user, `private_key` the PEM key of its certificate).
    repr() shows no secret."""
    flow: str = "token"
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    username: str | None = None
    private_key: str | None = field(default=None, repr=False)
    login_url: str = LOGIN_URL
    audience: str | None = None

    FLOWS = ("token", "refresh_token", "jwt")

    def __post_init__(self):
        if self.flow not in self.FLOWS:
            raise ConnectorError(f"salesforce auth: flow {self.flow!r} is not one of {self.FLOWS}", vendor="salesforce")
        needs = {"token": ("access_token",), "refresh_token": ("refresh_token", "client_id"),
                 "jwt": ("client_id", "username", "private_key")}[self.flow]
        missing = [name for name in needs if not getattr(self, name)]
        if missing:
            raise ConnectorError(f"salesforce auth ({self.flow} flow): missing {', '.join(missing)}; set it in the "
                                 f"connection (see README, API sources)", vendor="salesforce")
        for secret in (self.access_token, self.refresh_token, self.client_secret, self.private_key):
            register_secret(secret)

    @classmethod
    def from_credentials(cls, creds) -> "SalesforceAuth":
        """From a Connection: extra.auth picks the flow; password carries the access token, refresh token or
        PEM key of that flow (or extra.access_token / refresh_token / private_key / private_key_file); login is
        the JWT username."""
        extra = creds.extra
        flow = extra.get("auth") or ("jwt" if extra.get("private_key") else
                                     "refresh_token" if extra.get("refresh_token") else "token")
        secret = creds.token
        return cls(flow=flow,
                   access_token=extra.get("access_token") or (secret if flow == "token" else None),
                   refresh_token=extra.get("refresh_token") or (secret if flow == "refresh_token" else None),
                   private_key=extra.get("private_key") or _read_key(extra.get("private_key_file"))
                   or (secret if flow == "jwt" else None),
                   client_id=extra.get("client_id"), client_secret=extra.get("client_secret"),
                   username=creds.login or extra.get("username"),
                   login_url=(extra.get("login_url") or LOGIN_URL).rstrip("/"), audience=extra.get("audience"))

    def token_source(self, *, verify: bool | str = True) -> RenewableToken:
        if self.flow == "token":
            return RenewableToken(None, self.access_token, vendor="salesforce")
        return RenewableToken(lambda previous: self.grant(previous, verify=verify), None, vendor="salesforce")

    def grant(self, previous: dict | None = None, *, verify: bool | str = True) -> dict:
        """One call to the OAuth token endpoint: {"access_token", "instance_url", ...}. A refresh token the
        last grant rotated is used instead of the connection's."""
        url = f"{self.login_url}/services/oauth2/token"
        if self.flow == "refresh_token":
            form = {"grant_type": "refresh_token", "client_id": self.client_id,
                    "refresh_token": (previous or {}).get("refresh_token") or self.refresh_token}
            if self.client_secret:
                form["client_secret"] = self.client_secret
        else:
            import jwt

            claims = {"iss": self.client_id, "sub": self.username, "aud": self.audience or self.login_url,
                      "exp": int(time.time()) + 180}
            try:
                assertion = jwt.encode(claims, self.private_key, algorithm="RS256")
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                raise ConnectorError(f"salesforce auth (jwt flow): the private key cannot sign ({type(exc).__name__}); "
                                     f"it must be the PEM RSA key of the connected app's certificate",
                                     vendor="salesforce") from None
            register_secret(assertion)
            form = {"grant_type": JWT_GRANT, "assertion": assertion}
        grant = oauth_token_request(url, form, vendor="salesforce", verify=verify)
        log.info("salesforce: logged in (%s flow) to %s", self.flow, grant.get("instance_url"))
        return grant


def parse_error(resp: requests.Response) -> tuple[str, str | None]:
    """Salesforce errors: a list [{"message", "errorCode", "fields"}], or OAuth's {"error", "error_description"}."""
    body = resp.json()
    if isinstance(body, list) and body:
        first = body[0]
        fields = first.get("fields") or []
        message = first.get("message", "") + (f" (fields {', '.join(fields)})" if fields else "")
        return message, first.get("errorCode")
    if isinstance(body, dict):
        return body.get("error_description") or body.get("message") or str(body)[:300], body.get("error")
    return resp.text[:300], None


def sobject_of(record_id: str) -> str | None:
    """The sObject type of an Id by its key prefix (00Q Lead, 003 Contact, ...)."""
    return ID_PREFIXES.get(str(record_id)[:3])


@dataclass
class Outcome:
    ok: dict[str, dict] = field(default_factory=dict)     # record key (Id or external id) -> result
    errors: dict[str, str] = field(default_factory=dict)  # record key -> error naming the field


class SalesforceClient:
    vendor = "salesforce"

    def __init__(self, instance_url: str | None, session_id: str | None = None, *, auth: SalesforceAuth | None = None,
                 version: str = API_VERSION, max_requests: float = 25, per_seconds: float = 1.0,
                 timeout=(10.0, 120.0), max_retries: int = 5, backoff: float = 0.5, verify: bool | str = True,
                 bulk_threshold: int = BULK_THRESHOLD, bulk_poll: float = 2.0, bulk_timeout: float = 3600.0,
                 quota_reserve: float = 0.1):
        from simple_salesforce import Salesforce

        auth = auth or SalesforceAuth(access_token=session_id)
        self.auth = auth
        self.token = auth.token_source(verify=verify)
        first = self.token.token  # log in now: a bad key fails here, and the grant may name the instance
        instance_url = instance_url or self.token.grant.get("instance_url")
        if not instance_url:
            raise ConnectorError("salesforce: no instance URL; set the connection's host to https://<my-domain>."
                                 "my.salesforce.com", vendor=self.vendor)
        self.limiter = RateLimiter(max_requests, per_seconds)
        if quota_reserve < 0:
            raise ConnectorError(f"salesforce: quota_reserve must be >= 0, got {quota_reserve}", vendor=self.vendor)
        self.quota_reserve = quota_reserve
        self.api_usage: tuple[int, int] | None = None  # (used, daily limit) from the last Sforce-Limit-Info
        self._usage_lock = threading.Lock()
        self.session = ApiSession(instance_url, vendor=self.vendor, timeout=timeout, max_retries=max_retries,
                                  backoff=backoff, rate_limiter=self.limiter, verify=verify, error_parser=parse_error,
                                  on_response=self._observe, before_request=self._check_quota,
                                  token_provider=self.token, expired=_session_expired)
        self.bulk_threshold, self.bulk_poll, self.bulk_timeout = bulk_threshold, bulk_poll, bulk_timeout
        self.sf = Salesforce(instance_url=instance_url, session_id=first, version=version, session=self.session)

    @classmethod
    def from_connection(cls, conn_id: str = "salesforce_default", base_url: str | None = None, **kwargs):
        creds = credentials_for(conn_id)
        extra = creds.extra
        opts = {k: extra[k] for k in CLIENT_OPTIONS if k in extra}
        opts.update(kwargs)
        auth = SalesforceAuth.from_credentials(creds)
        return cls(base_url or creds.base_url or extra.get("instance_url"), auth=auth, **opts)

    # ------------------------------------------------------------------------------------------ quota
    def _observe(self, resp: requests.Response) -> None:
        m = _API_USAGE.search(resp.headers.get("Sforce-Limit-Info", ""))
        if m:
            with self._usage_lock:
                self.api_usage = (int(m[1]), int(m[2]))

    def quota_left(self) -> int | None:
        """Calls left in the org's 24-hour allowance, as of the last answer (None before any)."""
        usage = self.api_usage
        return None if usage is None else usage[1] - usage[0]

    def _check_quota(self) -> None:
        usage = self.api_usage
        if usage is None:
            return
        used, limit = usage
        reserve = int(self.quota_reserve * limit) if self.quota_reserve < 1 else int(self.quota_reserve)
        if limit - used <= reserve:
            raise ConnectorError(
                f"salesforce: stopping before the daily API quota runs out: {used:,} of {limit:,} calls used in the "
                f"last 24 hours and {reserve:,} are kept in reserve for the org's other users (quota_reserve="
                f"{self.quota_reserve:g}). Nothing more was sent; the next run resumes from the write-back log or the "
                f"watermark. Lower quota_reserve in the connection's extra, or ask Salesforce for a higher limit",
                vendor=self.vendor, code="API_QUOTA", retryable=True)

    def __repr__(self) -> str:
        return f"SalesforceClient({self.session.base_url}, {self.limiter})"

    def close(self) -> None:
        self.session.close()

    def _sf(self, what: str, fn, *args, **kwargs):
        """Call simple-salesforce, turning its exceptions into ConnectorErrors without the session id."""
        from simple_salesforce.exceptions import SalesforceError

        try:
            return fn(*args, **kwargs)
        except SalesforceError as exc:
            content = exc.content
            if isinstance(content, list) and content and isinstance(content[0], dict):
                first = content[0]
                fields = first.get("fields") or []
                raise ConnectorError(f"salesforce {what} failed: HTTP {exc.status} {first.get('errorCode')}: "
                                     f"{first.get('message')}{f' (fields {fields})' if fields else ''}",
                                     vendor=self.vendor, status=exc.status, code=first.get("errorCode"),
                                     field=",".join(fields) or None,
                                     retryable=exc.status == 429 or exc.status >= 500) from None
            raise ConnectorError(f"salesforce {what} failed: HTTP {exc.status}: {str(content)[:500]}",
                                 vendor=self.vendor, status=exc.status,
                                 retryable=exc.status == 429 or exc.status >= 500) from None

    # ------------------------------------------------------------------------------------------ reading
    def query(self, soql: str) -> Iterator[dict]:
        """Every record of a SOQL query, following nextRecordsUrl."""
        result = self._sf("query", self.sf.query, soql)
        while True:
            yield from result.get("records", [])
            if result.get("done", True) or not result.get("nextRecordsUrl"):
                return
            result = self._sf("query (next page)", self.sf.query_more, result["nextRecordsUrl"],
                              identifier_is_url=True)

    def read_frame(self, sobject: str, fields: Iterable[str], *, since: pd.Timestamp | None = None,
                   watermark: str = "SystemModstamp", overlap_seconds: float = 300.0,
                   where: str | None = None) -> pd.DataFrame:
        fields = sorted(set(fields) | {"Id", watermark})
        for name in [sobject, watermark, *fields]:
            if not _NAME.match(name):
                raise ConnectorError(f"salesforce {sobject}: {name!r} is not a field or object name",
                                     vendor=self.vendor, field=name)
        soql = f"SELECT {', '.join(fields)} FROM {sobject}"
        clauses = [f"({where})"] if where else []
        if since is not None:
            start = pd.Timestamp(since) - pd.Timedelta(seconds=overlap_seconds)
            clauses.append(f"{watermark} >= {start.tz_convert('UTC').strftime('%Y-%m-%dT%H:%M:%SZ')}")
        if clauses:
            soql += " WHERE " + " AND ".join(clauses)
        soql += f" ORDER BY {watermark} ASC"
        rows = [_flatten(r) for r in self.query(soql)]
        frame = pd.DataFrame.from_records(rows, columns=fields) if rows else pd.DataFrame(columns=fields)
        for column in fields:  # a relationship that is null for every row leaves its dotted column out
            if column not in frame:
                frame[column] = None
        frame = frame[fields]
        if len(frame):
            stamp = pd.to_datetime(frame[watermark], utc=True, errors="coerce", format="ISO8601")
            frame = (frame.assign(_s=stamp).sort_values("_s", kind="stable", na_position="first")
                     .drop_duplicates("Id", keep="last").drop(columns="_s").reset_index(drop=True))
        log.info("salesforce %s: %d records (since %s)", sobject, len(frame), since)
        return frame.astype("string")

    # ------------------------------------------------------------------------------------------ writing
    def update(self, records: list[dict]) -> Outcome:
        """Update records by Id: each {"attributes": {"type": ...}, "Id": ..., field: value}."""
        if len(records) > self.bulk_threshold:
            outcome = Outcome()
            by_type: dict[str, list[dict]] = {}
            for rec in records:
                by_type.setdefault(rec["attributes"]["type"], []).append(rec)
            for sobject, recs in by_type.items():
                self._bulk(sobject, "update", [_plain(r) for r in recs], "Id", outcome)
            return outcome
        return self._collections("composite/sobjects", records, "Id", "update")

    def upsert(self, sobject: str, external_id_field: str, records: list[dict]) -> Outcome:
        """Upsert records of one type by an external id field (keys of the outcome: that field's values)."""
        if not _NAME.match(external_id_field) or not _NAME.match(sobject):
            raise ConnectorError(f"salesforce upsert: bad object or field name {sobject}.{external_id_field}")
        for rec in records:
            rec.setdefault("attributes", {"type": sobject})
        if len(records) > self.bulk_threshold:
            outcome = Outcome()
            self._bulk(sobject, "upsert", [_plain(r) for r in records], external_id_field, outcome)
            return outcome
        return self._collections(f"composite/sobjects/{sobject}/{external_id_field}", records, external_id_field,
                                 f"upsert {sobject}")

    def _collections(self, path: str, records: list[dict], key_field: str, what: str) -> Outcome:
        outcome = Outcome()
        for chunk in chunked(records, COLLECTION_LIMIT):
            results = self._sf(f"{what} ({len(chunk)} records)", self.sf.restful, path, method="PATCH",
                               json={"allOrNone": False, "records": chunk}) or []
            if len(results) != len(chunk):
                raise ConnectorError(f"salesforce {what}: {len(results)} results for {len(chunk)} records",
                                     vendor=self.vendor)
            for rec, res in zip(chunk, results):
                key = str(rec.get(key_field))
                if res.get("success"):
                    outcome.ok[key] = res
                else:
                    outcome.errors[key] = "; ".join(
                        f"salesforce {what} {rec['attributes']['type']} {key}"
                        f"{' field ' + ','.join(e['fields']) if e.get('fields') else ''}: "
                        f"{e.get('statusCode')}: {e.get('message')}" for e in res.get("errors") or [{}])
        return outcome

    def _bulk(self, sobject: str, operation: str, records: list[dict], key_field: str, outcome: Outcome) -> None:
        """One Bulk API 2.0 ingest job, driven here so that a Failed or Aborted job still has its results read:
        successfulResults, failedResults and unprocessedrecords (rows the job never reached)."""
        base = f"/services/data/v{self.sf.sf_version}/jobs/ingest"
        what = f"bulk {operation} {sobject} ({len(records)} rows)"
        spec = {"object": sobject, "operation": operation, "contentType": "CSV", "lineEnding": "LF",
                "columnDelimiter": "COMMA"}
        if operation == "upsert":
            spec["externalIdFieldName"] = key_field
        job = self.session.json("POST", base, json=spec, what=f"{what}: create job")
        job_id = job["id"]
        try:
            self.session.call("PUT", f"{base}/{job_id}/batches", data=_csv(records).encode("utf-8"),
                              headers={"Content-Type": "text/csv"}, what=f"{what}: upload to job {job_id}")
            self.session.json("PATCH", f"{base}/{job_id}", json={"state": "UploadComplete"},
                              what=f"{what}: close job {job_id}")
        except ConnectorError:
            self.session.request("PATCH", f"{base}/{job_id}", json={"state": "Aborted"})
            raise
        deadline = time.monotonic() + self.bulk_timeout
        while True:
            job = self.session.json("GET", f"{base}/{job_id}", what=f"{what}: job {job_id} state")
            if job.get("state") in ("JobComplete", "Failed", "Aborted"):
                break
            if time.monotonic() > deadline:
                raise ConnectorError(f"salesforce {what}: job {job_id} still {job.get('state')} after "
                                     f"{self.bulk_timeout:.0f} s; the next run resends its rows", vendor=self.vendor,
                                     retryable=True)
            time.sleep(self.bulk_poll)
        state = job.get("state")
        for row in self._job_rows(base, job_id, "successfulResults", what):
            key = row.get(key_field) or row.get("sf__Id")
            outcome.ok[str(key)] = {"id": row.get("sf__Id"), "created": row.get("sf__Created") == "true"}
        for row in self._job_rows(base, job_id, "failedResults", what):
            key = row.get(key_field) or row.get("sf__Id")
            outcome.errors[str(key)] = f"salesforce bulk {operation} {sobject} {key}: {row.get('sf__Error')}"
        for row in self._job_rows(base, job_id, "unprocessedrecords", what):
            key = row.get(key_field)
            if key and str(key) not in outcome.ok:
                outcome.errors[str(key)] = (f"salesforce bulk {operation} {sobject} {key}: not processed, job {job_id} "
                                            f"ended {state} ({job.get('errorMessage') or 'no message'}) before this "
                                            f"row; it is sent again on the next run")
        unreported = [str(r.get(key_field)) for r in records
                      if str(r.get(key_field)) not in outcome.ok and str(r.get(key_field)) not in outcome.errors]
        for key in unreported:
            outcome.errors[key] = (f"salesforce bulk {operation} {sobject} {key}: job {job_id} ended {state} and "
                                   f"reported nothing for this row")
        log.info("salesforce bulk %s %s job %s %s: %d ok, %d failed or unprocessed", operation, sobject, job_id, state,
                 len(outcome.ok), len(outcome.errors))

    def _job_rows(self, base: str, job_id: str, kind: str, what: str) -> list[dict]:
        resp = self.session.call("GET", f"{base}/{job_id}/{kind}", headers={"Accept": "text/csv"},
                                 what=f"{what}: job {job_id} {kind}")
        return list(csv.DictReader(io.StringIO(resp.content.decode("utf-8-sig"))))


def _csv(records: list[dict]) -> str:
    names = list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n", restval="")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: _cell(v) for k, v in rec.items()})
    return buf.getvalue()


def _cell(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _plain(record: dict) -> dict:
    """A record for a Bulk CSV: no attributes; None as #N/A, which clears the field (an empty cell would not)."""
    return {k: (BULK_NULL if v is None else v) for k, v in record.items() if k != "attributes"}


def _read_key(path: str | None) -> str | None:
    """The PEM key of a JWT connection kept in a file (extra.private_key_file) rather than in the Connection."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConnectorError(f"salesforce auth (jwt flow): cannot read private_key_file {path!r} "
                             f"({type(exc).__name__}: {exc.strerror})", vendor="salesforce") from None


def _session_expired(resp: requests.Response) -> bool:
    return resp.status_code == 401 and "INVALID_SESSION_ID" in resp.text[:2000]


CLIENT_OPTIONS = ("version", "max_requests", "per_seconds", "max_retries", "backoff", "verify", "bulk_threshold",
                  "bulk_poll", "bulk_timeout", "quota_reserve")


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_salesforce_source(cfg, since) -> pd.DataFrame:
    """A `kind: salesforce` source: `object` (Lead, Contact, Task, Event, ...) with the mapped fields."""
    from slowburn.sources.hubspot import _since, rate_limit_options

    client = SalesforceClient.from_connection(cfg.connection or "salesforce_default", base_url=cfg.url,
                                              **rate_limit_options(cfg))
    try:
        return client.read_frame(cfg.object or "Lead", set(cfg.columns.values()), since=_since(since),
                                 watermark=cfg.watermark or "SystemModstamp", overlap_seconds=cfg.overlap_seconds,
                                 where=cfg.query)
    finally:
        client.close()
