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
* more than ``bulk_threshold`` (10,000) rows of one kind go through a Bulk API 2.0 ingest job
  (``sf.bulk2.<SObject>.update/upsert``); failed rows come from the job's failedResults.
Per-record failures name the record, the field(s) and Salesforce's status code.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import pandas as pd
import requests

from slowburn.sources.http import ApiSession, ConnectorError, RateLimiter, chunked, credentials_for, register_secret

log = logging.getLogger(__name__)

API_VERSION = "59.0"
COLLECTION_LIMIT = 200
BULK_THRESHOLD = 10_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
ID_PREFIXES = {"00Q": "Lead", "003": "Contact", "00T": "Task", "00U": "Event", "005": "User", "001": "Account"}


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

    def __init__(self, instance_url: str, session_id: str, *, version: str = API_VERSION, max_requests: float = 25,
                 per_seconds: float = 1.0, timeout=(10.0, 120.0), max_retries: int = 5, backoff: float = 0.5,
                 verify: bool | str = True, bulk_threshold: int = BULK_THRESHOLD, bulk_poll: float = 2.0):
        from simple_salesforce import Salesforce

        register_secret(session_id)
        self.limiter = RateLimiter(max_requests, per_seconds)
        self.session = ApiSession(instance_url, vendor=self.vendor, timeout=timeout, max_retries=max_retries,
                                  backoff=backoff, rate_limiter=self.limiter, verify=verify, error_parser=parse_error)
        self.bulk_threshold, self.bulk_poll = bulk_threshold, bulk_poll
        self.sf = Salesforce(instance_url=instance_url, session_id=session_id, version=version, session=self.session)

    @classmethod
    def from_connection(cls, conn_id: str = "salesforce_default", base_url: str | None = None, **kwargs):
        creds = credentials_for(conn_id)
        extra = creds.extra
        opts = {k: extra[k] for k in ("version", "max_requests", "per_seconds", "max_retries", "backoff", "verify",
                                      "bulk_threshold", "bulk_poll") if k in extra}
        opts.update(kwargs)
        if not creds.token:
            raise ConnectorError(f"salesforce connection {conn_id!r}: no access token (password or extra.token)")
        return cls(base_url or creds.base_url or extra.get("instance_url"), creds.token, **opts)

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
        """One Bulk API 2.0 ingest job; successes and failures are read back from the job's results."""
        api = getattr(self.sf.bulk2, sobject)
        kwargs = {"records": records, "wait": self.bulk_poll}
        if operation == "upsert":
            kwargs["external_id_field"] = key_field
        jobs = self._sf(f"bulk {operation} {sobject} ({len(records)} rows)", getattr(api, operation), **kwargs)
        for job in jobs:
            job_id = job["job_id"]
            failed = self._sf(f"bulk job {job_id} failedResults", api.get_failed_records, job_id)
            for row in csv.DictReader(io.StringIO(failed or "")):
                key = row.get(key_field) or row.get("sf__Id")
                outcome.errors[str(key)] = (f"salesforce bulk {operation} {sobject} {key}: {row.get('sf__Error')}")
            done = self._sf(f"bulk job {job_id} successfulResults", api.get_successful_records, job_id)
            for row in csv.DictReader(io.StringIO(done or "")):
                key = row.get(key_field) or row.get("sf__Id")
                outcome.ok[str(key)] = {"id": row.get("sf__Id"), "created": row.get("sf__Created") == "true"}
        log.info("salesforce bulk %s %s: %d ok, %d failed", operation, sobject, len(outcome.ok), len(outcome.errors))


def _plain(record: dict) -> dict:
    """A record for a Bulk CSV: no attributes; None as empty (Bulk leaves empty cells unchanged)."""
    return {k: ("" if v is None else v) for k, v in record.items() if k != "attributes"}


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
    from slowburn.sources.hubspot import _since, parse_rate

    opts = {}
    if cfg.rate_limit:
        opts["max_requests"], opts["per_seconds"] = parse_rate(cfg.rate_limit)
    client = SalesforceClient.from_connection(cfg.connection or "salesforce_default", base_url=cfg.url, **opts)
    try:
        return client.read_frame(cfg.object or "Lead", set(cfg.columns.values()), since=_since(since),
                                 watermark=cfg.watermark or "SystemModstamp", overlap_seconds=cfg.overlap_seconds,
                                 where=cfg.query)
    finally:
        client.close()
