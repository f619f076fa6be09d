"""HubSpot CRM v3 client: read contacts and engagements incrementally, write back in batches.

Reading
* a first (full) pull lists ``GET /crm/v3/objects/{object}`` 100 at a time, following ``paging.next.after``;
* an incremental pull searches ``POST /crm/v3/objects/{object}/search`` on the last-modified property
  (``lastmodifieddate`` for contacts, ``hs_lastmodifieddate`` otherwise), sorted ascending, 200 a page.
  A search query stops at 10,000 results, so the time range is windowed: when a window fills up, the
  next one starts at the last timestamp seen (overlapping rows are deduped on the object id); a window
  whose 10,000 rows all share one timestamp is walked by ``hs_object_id`` instead;
* engagements (calls, meetings, emails, notes, tasks) are read the same way, and their contacts come
  from ``POST /crm/v4/associations/{object}/contacts/batch/read``: one row per (engagement, contact).

Writing
* ``batch/update`` (records by id) and ``batch/upsert`` (by a unique ``idProperty``), at most 100
  inputs per call. A 400 for a batch is bisected down to the record that causes it, so the error names
  the record and the property and the other 99 still go through; 207 partial results are reported per id.
* task associations through ``POST /crm/v4/associations/tasks/contacts/batch/associate/default``.

Logging in: a private app's access token (sent as a Bearer token), or OAuth 2.0: the connection holds the
app's client id and secret and a refresh token; an access token is fetched from ``/oauth/v1/token`` at the
start and again when HubSpot answers 401 (access tokens live 30 minutes), once per expiry.

Limits: every request waits on a token bucket (default 100 requests per rolling 10 s; search also on
its own 4 per second), 429 is retried after Retry-After, and the ``X-HubSpot-RateLimit-*`` headers
pause the bucket when HubSpot says the window is used up.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import pandas as pd
import requests

from slowburn.sources.http import (ApiSession, ConnectorError, RateLimiter, RenewableToken, chunked, credentials_for,
                                   oauth_token_request, redact, register_secret)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.hubapi.com"
LIST_LIMIT = 100          # GET /crm/v3/objects/{object}: at most 100 per page
SEARCH_LIMIT = 200        # POST .../search: at most 200 per page
SEARCH_CAP = 10_000       # a search query pages through at most 10,000 results
BATCH_LIMIT = 100         # batch/update, batch/upsert, batch/read: at most 100 inputs
ASSOCIATION_BATCH = 1000  # v4 associations batch read/associate: at most 1,000 inputs
ENGAGEMENTS = ("calls", "meetings", "emails", "notes", "tasks", "communications", "postal_mail")
TASK_TO_CONTACT = 204     # HUBSPOT_DEFINED association type id: task -> contact


def parse_error(resp: requests.Response) -> tuple[str, str | None]:
    """HubSpot's error body: {"status": "error", "message", "correlationId", "category", "errors": [...]}."""
    body = resp.json()
    message = body.get("message") or resp.text[:300]
    details = []
    for item in body.get("errors") or []:
        ctx = item.get("context") or {}
        where = item.get("in") or ",".join(ctx.get("propertyName", []) or [])
        details.append(f"{item.get('message', '')}{f' (field {where})' if where else ''}")
    if details and not message.startswith("Property values were not valid"):
        message = f"{message} [{'; '.join(details)}]"
    if body.get("correlationId"):
        message += f" (correlationId {body['correlationId']})"
    return message, body.get("category") or body.get("errorType")


@dataclass(frozen=True)
class HubSpotAuth:
    """A private app's token, or OAuth (client id, client secret, refresh token). repr() shows no secret."""
    access_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_url: str | None = None  # default: <base URL>/oauth/v1/token

    def __post_init__(self):
        oauth = (self.client_id, self.client_secret, self.refresh_token)
        if any(oauth) and not all(oauth):
            raise ConnectorError("hubspot auth: OAuth needs client_id, client_secret and refresh_token together",
                                 vendor="hubspot")
        if not self.access_token and not all(oauth):
            raise ConnectorError("hubspot auth: give a private app token, or OAuth client_id, client_secret and "
                                 "refresh_token", vendor="hubspot")
        for secret in (self.access_token, self.client_secret, self.refresh_token):
            register_secret(secret)

    @classmethod
    def from_credentials(cls, creds) -> "HubSpotAuth":
        """password: the private app token; or extra.client_id + client_secret + refresh_token for OAuth."""
        extra = creds.extra
        if extra.get("refresh_token") or extra.get("auth") == "oauth":
            return cls(client_id=extra.get("client_id"), client_secret=extra.get("client_secret"),
                       refresh_token=extra.get("refresh_token") or creds.token, token_url=extra.get("token_url"))
        return cls(access_token=creds.token)

    def token_source(self, base_url: str, *, verify: bool | str = True) -> RenewableToken:
        if not self.refresh_token:
            return RenewableToken(None, self.access_token, vendor="hubspot")
        url = self.token_url or f"{base_url.rstrip('/')}/oauth/v1/token"

        def fetch(previous: dict) -> dict:
            form = {"grant_type": "refresh_token", "client_id": self.client_id, "client_secret": self.client_secret,
                    "refresh_token": previous.get("refresh_token") or self.refresh_token}
            return oauth_token_request(url, form, vendor="hubspot", verify=verify)

        return RenewableToken(fetch, None, vendor="hubspot")


@dataclass
class BatchOutcome:
    """What a batch write did: ids written, and per-record errors (record key -> message)."""
    ok: dict[str, dict] = field(default_factory=dict)      # input key -> result object
    errors: dict[str, str] = field(default_factory=dict)   # input key -> error naming the field


class HubSpotClient:
    vendor = "hubspot"

    def __init__(self, base_url: str = DEFAULT_BASE_URL, token: str | None = None, *, auth: HubSpotAuth | None = None,
                 max_requests: int = 100,
                 per_seconds: float = 10.0, search_per_second: float = 4.0, timeout=(10.0, 120.0),
                 max_retries: int = 5, backoff: float = 0.5, verify: bool | str = True, pool_size: int = 10,
                 search_cap: int = SEARCH_CAP, search_limit: int = SEARCH_LIMIT):
        self.search_cap, self.search_limit = search_cap, min(search_limit, SEARCH_LIMIT)
        self.limiter = RateLimiter(max_requests, per_seconds)
        self.search_limiter = RateLimiter.per_second(search_per_second, burst=1)
        self.auth = auth or HubSpotAuth(access_token=token)
        self.token = self.auth.token_source(base_url, verify=verify)
        self.session = ApiSession(base_url, vendor=self.vendor, timeout=timeout, token_provider=self.token,
                                  max_retries=max_retries, backoff=backoff, rate_limiter=self.limiter, verify=verify,
                                  pool_size=pool_size, error_parser=parse_error, on_response=self._observe)

    @classmethod
    def from_connection(cls, conn_id: str = "hubspot_default", base_url: str | None = None, **kwargs):
        creds = credentials_for(conn_id, default_base_url=DEFAULT_BASE_URL)
        extra = creds.extra
        opts = {k: extra[k] for k in CLIENT_OPTIONS if k in extra}
        opts.update(kwargs)
        return cls(base_url or creds.base_url, auth=HubSpotAuth.from_credentials(creds), **opts)

    def __repr__(self) -> str:
        return f"HubSpotClient({self.session.base_url}, {self.limiter})"

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------------------------------ limits
    def _observe(self, resp: requests.Response) -> None:
        """Pause the bucket when HubSpot says the rolling window has no requests left."""
        remaining = resp.headers.get("X-HubSpot-RateLimit-Remaining")
        if remaining is None:
            return
        try:
            left = int(remaining)
            interval = float(resp.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")) / 1000.0
            ceiling = int(resp.headers.get("X-HubSpot-RateLimit-Max", "0"))
        except ValueError:
            return
        if left <= 0:
            # The oldest request in the rolling window frees a slot within one interval; wait a slice of it.
            self.limiter.pause(interval / max(ceiling, 10) * 2)
        if resp.status_code == 429:
            try:
                policy = resp.json().get("policyName", "")
            except ValueError:
                policy = ""
            if policy == "DAILY":
                raise ConnectorError("hubspot: the daily API limit is used up (429, policy DAILY); the pull or "
                                     "write-back resumes from its watermark or log on the next run",
                                     vendor=self.vendor, status=429, code="RATE_LIMITS")

    # ------------------------------------------------------------------------------------------ reading
    def iter_objects(self, object_type: str, properties: Iterable[str], *, limit: int = LIST_LIMIT,
                     archived: bool = False) -> Iterator[dict]:
        """Every record of `object_type` through the list endpoint (no 10,000 cap)."""
        params = {"limit": min(limit, LIST_LIMIT), "properties": ",".join(sorted(set(properties))),
                  "archived": str(archived).lower()}
        after = None
        while True:
            if after:
                params["after"] = after
            page = self.session.json("GET", f"/crm/v3/objects/{object_type}", params=params,
                                     what=f"list {object_type}") or {}
            results = page.get("results") or []
            yield from results
            nxt = _next_cursor(page, after, f"list {object_type}")
            if not nxt or not results:  # an empty page ends the listing, whatever the cursor says
                return
            after = nxt

    def _search_page(self, object_type: str, body: dict) -> dict:
        self.search_limiter.acquire()
        return self.session.json("POST", f"/crm/v3/objects/{object_type}/search", json=body,
                                 what=f"search {object_type}")

    def iter_modified_since(self, object_type: str, properties: Iterable[str], since_ms: int | None,
                            watermark: str | None = None) -> Iterator[dict]:
        """Records modified at or after `since_ms` (epoch ms), oldest first, windowed past 10,000.

        A record may come twice where windows overlap; callers dedupe on id.
        """
        watermark = watermark or default_watermark(object_type)
        props = sorted(set(properties) | {watermark, "hs_object_id"})
        limit = self.search_limit
        lo = since_ms
        while True:
            filters = [] if lo is None else [{"propertyName": watermark, "operator": "GTE", "value": str(lo)}]
            last_stamp, count, complete = None, 0, False
            for rec, complete in self._walk(object_type, filters, watermark, props, limit):
                count += 1
                last_stamp = _epoch_ms(rec["properties"].get(watermark)) or last_stamp
                yield rec
            if complete or count == 0:
                return
            if last_stamp is None:
                raise ConnectorError(f"hubspot search {object_type}: results carry no {watermark}; cannot window "
                                     f"past {self.search_cap} results", vendor=self.vendor)
            if lo is not None and last_stamp <= lo:
                # 10,000 records share one timestamp (a bulk import): walk that instant by object id.
                yield from self._same_instant(object_type, watermark, last_stamp, props, limit)
                lo = last_stamp + 1
            else:
                lo = last_stamp
            log.info("hubspot search %s: window full at %d results; next window from %s", object_type, count,
                     pd.Timestamp(lo, unit="ms", tz="UTC"))

    def _walk(self, object_type, filters, sort_property, props, limit):
        """(record, complete) for one search query, up to the 10,000 cap; complete=True on the last page.

        `paging.next.after` is an opaque cursor, passed back as HubSpot gave it; how far the query has paged is
        counted from the results received, not read from the cursor."""
        after, seen = None, 0
        while True:
            body = {"filterGroups": [{"filters": filters}] if filters else [],
                    "sorts": [{"propertyName": sort_property, "direction": "ASCENDING"}],
                    "properties": props, "limit": limit}
            if after is not None:
                body["after"] = after
            page = self._search_page(object_type, body) or {}
            results = page.get("results") or []
            nxt = _next_cursor(page, after, f"search {object_type}")
            if not nxt or not results:
                for i, rec in enumerate(results):
                    yield rec, i == len(results) - 1
                return
            for rec in results:
                yield rec, False
            after, seen = str(nxt), seen + len(results)
            if seen + limit > self.search_cap:
                return  # this query can page no further: the caller opens the next window

    def _same_instant(self, object_type, watermark, stamp, props, limit):
        last_id = 0
        while True:
            filters = [{"propertyName": watermark, "operator": "EQ", "value": str(stamp)},
                       {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}]
            count, complete = 0, False
            for rec, complete in self._walk(object_type, filters, "hs_object_id", props, limit):
                count += 1
                last_id = max(last_id, int(rec["id"]))
                yield rec
            if complete or count == 0:
                return

    def contact_associations(self, object_type: str, ids: list[str]) -> dict[str, list[str]]:
        """Contact ids associated with each `object_type` record (v4 batch read, 1,000 per call)."""
        out: dict[str, list[str]] = {}
        for chunk in chunked(list(dict.fromkeys(ids)), ASSOCIATION_BATCH):
            page = self.session.json("POST", f"/crm/v4/associations/{object_type}/contacts/batch/read",
                                     json={"inputs": [{"id": str(i)} for i in chunk]},
                                     what=f"read {object_type}->contacts associations", ok=(207,))
            for res in (page or {}).get("results") or []:
                source = (res.get("from") or {}).get("id")
                if source is not None:
                    out[str(source)] = [str(t["toObjectId"]) for t in res.get("to") or [] if t.get("toObjectId")]
        return out

    def read_with_history(self, object_type: str, ids: list[str], properties: Iterable[str],
                          with_history: Iterable[str]) -> Iterator[dict]:
        """``batch/read`` of records by id (100 a call), each with `propertiesWithHistory`: every past value of
        those properties with the time it was set ({"value", "timestamp", "sourceType"})."""
        props, history = sorted(set(properties)), sorted(set(with_history))
        for chunk in chunked(list(dict.fromkeys(map(str, ids))), BATCH_LIMIT):
            page = self.session.json("POST", f"/crm/v3/objects/{object_type}/batch/read",
                                     json={"inputs": [{"id": i} for i in chunk], "properties": props,
                                           "propertiesWithHistory": history},
                                     what=f"read {object_type} with history", ok=(207,))
            yield from (page or {}).get("results") or []

    def read_frame(self, object_type: str, properties: Iterable[str], *, since: pd.Timestamp | None = None,
                   watermark: str | None = None, overlap_seconds: float = 300.0) -> pd.DataFrame:
        """The records as a frame of text columns: id, every property, createdAt/updatedAt/archived.

        Incremental when `since` is given (from `since - overlap`); deduped on id, keeping the newest.
        Engagement objects get a `contact_id` column, one row per associated contact.
        """
        watermark = watermark or default_watermark(object_type)
        props = sorted(set(properties) - {"id", "contact_id", "createdAt", "updatedAt", "archived"} | {watermark})
        if since is None:
            records = self.iter_objects(object_type, props)
        else:
            start = pd.Timestamp(since) - pd.Timedelta(seconds=overlap_seconds)
            records = self.iter_modified_since(object_type, props, int(start.value // 1_000_000), watermark)
        rows = [_flatten(rec, props) for rec in records]
        frame = pd.DataFrame.from_records(rows, columns=["id", *props, "createdAt", "updatedAt", "archived"])
        if len(frame):
            stamp = pd.to_datetime(frame[watermark], utc=True, errors="coerce", format="ISO8601")
            frame = (frame.assign(_stamp=stamp).sort_values("_stamp", kind="stable", na_position="first")
                     .drop_duplicates("id", keep="last").drop(columns="_stamp").reset_index(drop=True))
        if object_type in ENGAGEMENTS:
            links = self.contact_associations(object_type, frame["id"].tolist()) if len(frame) else {}
            frame["contact_id"] = frame["id"].map(lambda i: links.get(i) or [None])
            frame = frame.explode("contact_id", ignore_index=True)
        log.info("hubspot %s: %d records (since %s)", object_type, len(frame), since)
        return frame.astype("string")

    # ------------------------------------------------------------------------------------------ writing
    def batch_update(self, object_type: str, inputs: list[dict]) -> BatchOutcome:
        """``batch/update`` of records by id: inputs [{"id": ..., "properties": {...}}], any number."""
        return self._batches(object_type, "update", inputs, key=lambda i: str(i["id"]))

    def batch_upsert(self, object_type: str, inputs: list[dict]) -> BatchOutcome:
        """``batch/upsert`` by a unique property: inputs [{"id": value, "idProperty": name, "properties"}]."""
        return self._batches(object_type, "upsert", inputs, key=lambda i: str(i["id"]))

    def _batches(self, object_type, verb, inputs, key) -> BatchOutcome:
        outcome = BatchOutcome()
        for chunk in chunked(inputs, BATCH_LIMIT):
            self._send_batch(object_type, verb, chunk, key, outcome)
        return outcome

    def _send_batch(self, object_type, verb, chunk, key, outcome: BatchOutcome) -> None:
        what = f"batch/{verb} {object_type}"
        resp = self.session.request("POST", f"/crm/v3/objects/{object_type}/batch/{verb}", json={"inputs": chunk})
        if resp.status_code in (200, 201, 207):
            body = resp.json()
            by_value = {}
            for res in body.get("results", []):
                by_value[str(res.get("id"))] = res
                for prop in {c.get("idProperty") for c in chunk if c.get("idProperty")}:
                    value = (res.get("properties") or {}).get(prop)
                    if value is not None:
                        by_value[str(value)] = res
            failed = {}
            for err in body.get("errors", []):
                ctx = err.get("context") or {}
                ids = ctx.get("ids") or ctx.get("id") or []
                for i in ids:
                    failed[str(i)] = f"{err.get('category', 'error')}: {err.get('message', '')}"
            for item in chunk:
                k = key(item)
                if k in failed:
                    outcome.errors[k] = f"hubspot {what} {k}: {failed[k]}"
                elif k in by_value:
                    outcome.ok[k] = by_value[k]
                else:
                    outcome.errors[k] = f"hubspot {what} {k}: not in HubSpot's answer"
            return
        if resp.status_code == 400 and len(chunk) > 1:
            # One bad input rejects the whole batch: bisect to find it, write the rest.
            half = len(chunk) // 2
            log.warning("hubspot %s: 400 for a batch of %d; splitting to find the bad record", what, len(chunk))
            self._send_batch(object_type, verb, chunk[:half], key, outcome)
            self._send_batch(object_type, verb, chunk[half:], key, outcome)
            return
        if resp.status_code in (400, 409):
            item = chunk[0]
            message, code = parse_error(resp) if _is_json(resp) else (resp.text[:300], None)
            prop = _property_in(message, item.get("properties", {}))
            outcome.errors[key(item)] = redact(
                f"hubspot {what} {key(item)}{f' field {prop}' if prop else ''}: "
                f"HTTP {resp.status_code} {code or ''}: {message}")
            return
        raise self.session.error(resp, what)

    def associate_tasks(self, pairs: list[tuple[str, str]]) -> None:
        """Associate tasks with contacts ((task id, contact id) pairs), idempotently."""
        for chunk in chunked(pairs, ASSOCIATION_BATCH):
            self.session.json("POST", "/crm/v4/associations/tasks/contacts/batch/associate/default",
                              json={"inputs": [{"from": {"id": t}, "to": {"id": c}} for t, c in chunk]},
                              what="associate tasks with contacts", ok=(207,))


CLIENT_OPTIONS = ("max_requests", "per_seconds", "search_per_second", "max_retries", "backoff", "verify", "search_cap",
                  "search_limit")


def _next_cursor(page: dict, previous: str | None, what: str) -> str | None:
    """paging.next.after, an opaque string; the same cursor twice would loop forever, so it is an error."""
    nxt = ((page.get("paging") or {}).get("next") or {}).get("after")
    if nxt in (None, ""):
        return None
    if previous is not None and str(nxt) == str(previous):
        raise ConnectorError(f"hubspot {what}: the paging cursor did not advance ({nxt!r}); stopping instead of "
                             f"reading the same page again", vendor="hubspot", code="CURSOR_STUCK")
    return str(nxt)


def default_watermark(object_type: str) -> str:
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def _flatten(rec: dict, props: list[str]) -> dict:
    row = {"id": str(rec.get("id")), "createdAt": rec.get("createdAt"), "updatedAt": rec.get("updatedAt"),
           "archived": str(rec.get("archived", False)).lower()}
    values = rec.get("properties") or {}
    for p in props:
        row[p] = values.get(p)
    return row


def _epoch_ms(value) -> int | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return int(text)
    stamp = pd.Timestamp(text)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1_000_000)


def _is_json(resp) -> bool:
    try:
        resp.json()
        return True
    except ValueError:
        return False


def _property_in(message: str, properties: dict) -> str | None:
    """The property an error message names: HubSpot puts `"name":"<property>"` in validation messages."""
    for prop in sorted(properties, key=len, reverse=True):
        if f'"{prop}"' in message or f"'{prop}'" in message or f" {prop} " in f" {message} ":
            return prop
    try:
        start = message.index("[")
        items = json.loads(message[start:message.rindex("]") + 1])
        return items[0].get("name") if items and isinstance(items[0], dict) else None
    except (ValueError, TypeError, AttributeError):
        return None


def read_hubspot_source(cfg, since) -> pd.DataFrame:
    """A `kind: hubspot` source (slowburn.sources.config) as a frame of vendor columns."""
    client = HubSpotClient.from_connection(cfg.connection or "hubspot_default", base_url=cfg.url,
                                           **rate_limit_options(cfg))
    try:
        props = set(cfg.columns.values()) - {"id", "contact_id", "createdAt", "updatedAt", "archived"}
        return client.read_frame(cfg.object or "contacts", props, since=_since(since),
                                 watermark=cfg.watermark, overlap_seconds=cfg.overlap_seconds)
    finally:
        client.close()


def rate_limit_options(cfg) -> dict:
    if not cfg.rate_limit:
        return {}
    count, seconds = parse_rate(cfg.rate_limit)
    return {"max_requests": count, "per_seconds": seconds}


def parse_rate(text: str) -> tuple[float, float]:
    """'100/10s' -> (100, 10); '5/s' -> (5, 1)."""
    count, _, window = str(text).partition("/")
    window = window.strip().lower().rstrip("s") or "1"
    return float(count), float(window or 1)


def _since(since) -> pd.Timestamp | None:
    if since is None:
        return None
    if isinstance(since, (int, float)):
        return pd.Timestamp(int(since), unit="ms", tz="UTC")
    stamp = pd.Timestamp(since)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
