"""Shared HTTP plumbing for the vendor clients (HubSpot, Salesforce, Mailchimp).

Every call made by a connector goes through an :class:`ApiSession`, a ``requests.Session`` that

* puts a timeout on every request (connect, read),
* retries with exponential backoff and full jitter on connection errors, timeouts and 5xx,
  and never on a 4xx other than 429,
* honours 429 with ``Retry-After`` (seconds or an HTTP date), pausing the shared rate limiter so
  that concurrent workers wait too,
* waits on a token-bucket :class:`RateLimiter` before each request, so a run stays under the
  vendor's limit instead of bouncing off it,
* never shows a token: errors and log lines go through :func:`redact`, and the token itself
  only ever travels in a header,
* with a ``token_provider`` (:class:`RenewableToken`: an OAuth refresh-token or JWT grant), sends the
  current access token on every request, whatever header a library built, and on an expired-token
  answer (401; the client decides what counts) fetches a new one once and resends,
* calls ``before_request`` first (the Salesforce client refuses to spend the last of its daily quota there).

simple-salesforce accepts a ``session=``; giving it an ApiSession puts the same retries, limits
and timeouts around its calls. Retrying a write is safe only because every write slowburn makes
is idempotent (upserts by key, updates by id, PUT by subscriber hash): see slowburn.writeback.

Credentials come from :func:`credentials_for`: an Airflow Connection when slowburn.airflow.connectors
registered its resolver, otherwise ``SLOWBURN_CONN_<ID>`` or ``AIRFLOW_CONN_<ID>`` (JSON) from the
environment, so the core works without Airflow.
"""
from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

__all__ = ["ApiSession", "ConnectorError", "RateLimiter", "Credentials", "credentials_for", "redact",
           "register_credentials_resolver", "register_secret", "chunked", "RenewableToken", "oauth_token_request"]

USER_AGENT = "slowburn/0.1 (+lead hygiene)"


# ---------------------------------------------------------------------------------------------- errors
class ConnectorError(RuntimeError):
    """A vendor call failed for good. The message names the vendor and the call, and where known
    the record and the field; it never contains a token."""

    def __init__(self, message: str, *, vendor: str | None = None, status: int | None = None,
                 code: str | None = None, record: str | None = None, field: str | None = None,
                 retryable: bool = False):
        super().__init__(redact(message))
        self.vendor, self.status, self.code = vendor, status, code
        self.record, self.field, self.retryable = record, field, retryable


# ---------------------------------------------------------------------------------------------- secrets
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic|oauth)\s+[A-Za-z0-9._~+/=:-]+"), r"\1 ***"),
    (re.compile(r"(?i)((?:access_token|refresh_token|apikey|api_key|hapikey|token|session_id|sid|password|"
                r"client_secret)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;}]+"), r"\1***"),
]


def register_secret(secret: str | None) -> None:
    """Remember a secret so that redact() and the log filter blank it wherever it appears."""
    if secret and len(secret) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(secret)
            # Mailchimp keys carry their data centre after a dash; the part before it is the secret too.
            head = secret.rsplit("-", 1)[0]
            if len(head) >= 8:
                _SECRETS.add(head)
            if "-----BEGIN" in secret:  # a PEM key: each base64 line on its own is secret too
                _SECRETS.update(line.strip() for line in secret.splitlines()
                                if len(line.strip()) >= 16 and not line.startswith("-----"))


def redact(text, secrets: Iterable[str] = ()) -> str:
    """`text` with every registered secret, Authorization value and token-looking parameter blanked."""
    text = str(text)
    with _SECRETS_LOCK:
        known = sorted(set(secrets) | _SECRETS, key=len, reverse=True)
    for secret in known:
        if secret and secret in text:
            text = text.replace(secret, "***")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Blanks registered secrets in every record passing through the loggers it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: leave it to logging's own error handling
                return True
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()
# A logger's filters apply only to records made by that very logger, so each one is named.
for _name in ("urllib3.connectionpool", "simple_salesforce.api", "slowburn.sources.http", "slowburn.sources.hubspot",
              "slowburn.sources.salesforce", "slowburn.sources.mailchimp", "slowburn.sources.engagement",
              "slowburn.writeback", "slowburn.airflow.connectors"):
    logging.getLogger(_name).addFilter(_FILTER)


# ---------------------------------------------------------------------------------------------- limits
class RateLimiter:
    """A thread-safe token bucket that keeps callers under `max_requests` per `per_seconds`.

    A bucket of capacity C refilled at r tokens/s lets through at most C + r*T requests in any
    window of T seconds. To stay under N per T in every rolling window (HubSpot counts a rolling
    10 s), the capacity is `burst` (default N/10) and the refill rate (N - burst) / T; the steady
    rate is therefore a little under the limit, never over it.

    `pause(seconds)` stops everyone until then (a 429's Retry-After, or a vendor header saying the
    window is used up). `waited` adds up the seconds callers spent waiting here.
    """

    def __init__(self, max_requests: float, per_seconds: float = 1.0, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if max_requests <= 0 or per_seconds <= 0:
            raise ValueError("a rate limit needs max_requests > 0 and per_seconds > 0")
        self.max_requests, self.per_seconds = float(max_requests), float(per_seconds)
        self.capacity = float(burst) if burst is not None else max(1.0, self.max_requests / 10.0)
        self.capacity = min(self.capacity, self.max_requests)
        spare = self.max_requests - self.capacity
        self.rate = (spare if spare > 0 else self.max_requests) / self.per_seconds
        self._clock, self._sleep = clock, sleep
        self._tokens = self.capacity
        self._stamp = clock()
        self._blocked_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0

    @classmethod
    def per_second(cls, rps: float, burst: float | None = None) -> "RateLimiter":
        return cls(rps, 1.0, burst if burst is not None else max(1.0, rps / 10.0))

    def __repr__(self) -> str:
        return f"RateLimiter({self.max_requests:g} per {self.per_seconds:g} s, burst {self.capacity:g})"

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0  # reserve now: later callers queue behind this one
            wait = max(0.0, -self._tokens / self.rate, self._blocked_until - now)
        if wait > 0:
            self._sleep(wait)
            with self._lock:
                self.waited += wait
        return wait

    def pause(self, seconds: float) -> None:
        """Nobody gets a token for `seconds` from now (and the bucket restarts empty)."""
        with self._lock:
            now = self._clock()
            self._blocked_until = max(self._blocked_until, now + max(0.0, seconds))
            self._tokens = min(self._tokens, 0.0)
            self._stamp = max(self._stamp, now)


# ---------------------------------------------------------------------------------------------- session
@dataclass
class CallStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts) -> None:
        with self.lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("requests", "retries", "throttled", "server_errors",
                                              "connection_errors", "bytes_in", "bytes_out")}


_LOOPBACK_NAMES = ("localhost", "::1", "127.0.0.1")
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class ApiSession(requests.Session):
    """requests.Session with timeouts, retries, backoff, 429 handling, a rate limiter and redaction.

    `request()` returns the final response (a 4xx, or a 5xx/429 after the retries ran out) so that
    libraries such as simple-salesforce keep their own error mapping; `call()` raises a
    ConnectorError for any non-2xx, with the vendor's message parsed by `error_parser`.
    Relative URLs are joined to `base_url`.
    """

    def __init__(self, base_url: str, *, vendor: str, token: str | None = None, auth_scheme: str = "Bearer",
                 basic_user: str | None = None, timeout: tuple[float, float] | float = (10.0, 120.0),
                 max_retries: int = 5, max_throttle_retries: int = 20, backoff: float = 0.5,
                 max_backoff: float = 60.0, max_retry_after: float = 300.0,
                 rate_limiter: RateLimiter | None = None, verify: bool | str = True, pool_size: int = 10,
                 error_parser: Callable[[requests.Response], tuple[str, str | None]] | None = None,
                 on_response: Callable[[requests.Response], None] | None = None,
                 before_request: Callable[[], None] | None = None,
                 token_provider: "RenewableToken | None" = None,
                 expired: Callable[[requests.Response], bool] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__()
        if not base_url or not urlsplit(base_url).scheme:
            raise ConnectorError(f"{vendor}: the base URL {base_url!r} is not an http(s) URL; set the "
                                 f"connection's host, for example https://api.example.com", vendor=vendor)
        self.base_url = base_url.rstrip("/")
        base = urlsplit(self.base_url)
        self._netloc = base.netloc
        self._plain_loopback = base.scheme == "http" and (base.hostname or "") in _LOOPBACK_NAMES or (
            base.scheme == "http" and (base.hostname or "").startswith("127."))
        self.vendor = vendor
        self.timeout = timeout
        self.max_retries, self.max_throttle_retries = max_retries, max_throttle_retries
        self.backoff, self.max_backoff, self.max_retry_after = backoff, max_backoff, max_retry_after
        self.rate_limiter = rate_limiter
        self.verify = verify
        self.error_parser = error_parser
        self.on_response = on_response
        self.before_request = before_request
        self.token_provider = token_provider
        self.expired = expired or (lambda resp: resp.status_code == 401)
        self.stats = CallStats()
        self._sleep = sleep
        self.headers["User-Agent"] = USER_AGENT
        self.headers["Accept"] = "application/json"
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        if token:
            register_secret(token)
            if basic_user is not None:
                self.auth = (basic_user, token)
            else:
                self.headers["Authorization"] = f"{auth_scheme} {token}"

    def __repr__(self) -> str:
        return f"ApiSession({self.vendor} at {self.base_url})"

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return self._loopback_scheme(path)
        return f"{self.base_url}/{path.lstrip('/')}"

    def _loopback_scheme(self, url: str) -> str:
        """simple-salesforce always builds https:// URLs; a plain-http base URL on a loopback address (a
        test server) keeps its scheme for its own host. Nothing else is ever downgraded."""
        if not self._plain_loopback or not url.startswith("https://"):
            return url
        parts = urlsplit(url)
        if parts.netloc != self._netloc:
            return url
        return "http://" + url[len("https://"):]

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_backoff, self.backoff * (2 ** attempt))) if self.backoff else 0.0

    def request(self, method, url, *args, **kwargs):  # noqa: D401 - requests' signature
        url = self.url(str(url))
        kwargs.setdefault("timeout", self.timeout)
        what = f"{self.vendor} {method} {_path_of(url)}"
        failures = throttles = 0
        renewed = False
        while True:
            if self.before_request is not None:
                self.before_request()
            if self.rate_limiter is not None:
                self.rate_limiter.acquire()
            sent_token = None
            if self.token_provider is not None:
                # The current token wins over any header a library built from the token it was given.
                sent_token = self.token_provider.token
                kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Bearer {sent_token}"}
            try:
                resp = super().request(method, url, *args, **kwargs)
            except _TRANSIENT as exc:
                failures += 1
                self.stats.add(connection_errors=1, retries=1)
                if failures > self.max_retries:
                    raise ConnectorError(f"{what}: no answer after {failures} attempts "
                                         f"({type(exc).__name__}: {redact(exc)})", vendor=self.vendor,
                                         retryable=True) from None
                delay = self._backoff(failures - 1)
                log.warning("%s: %s; retry %d/%d in %.2f s", what, type(exc).__name__, failures, self.max_retries,
                            delay)
                self._sleep(delay)
                continue
            self.stats.add(requests=1, bytes_in=len(resp.content or b""),
                           bytes_out=_body_size(kwargs.get("data"), kwargs.get("json")))
            if self.on_response is not None:
                self.on_response(resp)
            status = resp.status_code
            if sent_token is not None and not renewed and self.token_provider.renewable and self.expired(resp):
                # An expired session or access token: log in again once and resend the request.
                renewed = True
                log.info("%s: HTTP %d, the access token expired; renewing it and retrying once", what, status)
                self.token_provider.renew(stale=sent_token)
                continue
            if status == 429:
                throttles += 1
                self.stats.add(throttled=1)
                if throttles > self.max_throttle_retries:
                    return resp
                delay = self._retry_after(resp)
                if delay is None:
                    delay = self._backoff(min(throttles - 1, 6)) or 1.0
                if delay > self.max_retry_after:
                    raise ConnectorError(f"{what}: throttled (429) and told to wait {delay:.0f} s, longer than "
                                         f"max_retry_after={self.max_retry_after:.0f} s; the daily quota is "
                                         f"probably used up: {self.describe(resp)}", vendor=self.vendor,
                                         status=429, retryable=True)
                if self.rate_limiter is not None:
                    self.rate_limiter.pause(delay)
                    log.info("%s: 429, everyone waits %.2f s (retry %d)", what, delay, throttles)
                else:
                    log.info("%s: 429, waiting %.2f s (retry %d)", what, delay, throttles)
                    self._sleep(delay)
                self.stats.add(retries=1)
                continue
            if status >= 500:
                failures += 1
                self.stats.add(server_errors=1)
                if failures > self.max_retries:
                    return resp
                delay = self._retry_after(resp)
                delay = self._backoff(failures - 1) if delay is None else min(delay, self.max_retry_after)
                log.warning("%s: %d; retry %d/%d in %.2f s", what, status, failures, self.max_retries, delay)
                self.stats.add(retries=1)
                self._sleep(delay)
                continue
            return resp

    @staticmethod
    def _retry_after(resp: requests.Response) -> float | None:
        value = resp.headers.get("Retry-After")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())

    def describe(self, resp: requests.Response) -> str:
        """The vendor's error message for a response, redacted, kept short."""
        message, _ = self._parse_error(resp)
        return redact(message)[:1000]

    def _parse_error(self, resp: requests.Response) -> tuple[str, str | None]:
        if self.error_parser is not None:
            try:
                return self.error_parser(resp)
            except Exception:  # an unexpected body: fall back to the raw text
                pass
        return (f"HTTP {resp.status_code}: {resp.text[:500]}", None)

    def call(self, method: str, path: str, *, what: str | None = None, record: str | None = None,
             ok: Iterable[int] = (), **kwargs) -> requests.Response:
        """request(), raising ConnectorError unless the response is 2xx (or in `ok`)."""
        resp = self.request(method, path, **kwargs)
        if 200 <= resp.status_code < 300 or resp.status_code in set(ok):
            return resp
        raise self.error(resp, what or f"{method} {_path_of(self.url(path))}", record=record)

    def error(self, resp: requests.Response, what: str, *, record: str | None = None) -> ConnectorError:
        message, code = self._parse_error(resp)
        where = f" for {record}" if record else ""
        hint = {401: " (check the token in the connection)", 403: " (the token lacks a scope or permission)",
                404: " (check the base URL and the object or list id)"}.get(resp.status_code, "")
        retryable = resp.status_code == 429 or resp.status_code >= 500
        return ConnectorError(f"{self.vendor} {what}{where} failed: HTTP {resp.status_code}"
                              f"{' ' + code if code else ''}: {message}{hint}", vendor=self.vendor,
                              status=resp.status_code, code=code, record=record, retryable=retryable)

    def json(self, method: str, path: str, **kwargs):
        resp = self.call(method, path, **kwargs)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise ConnectorError(f"{self.vendor} {method} {path}: the answer is not JSON: {resp.text[:200]!r}",
                                 vendor=self.vendor, status=resp.status_code) from None


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{redact(parts.query)}" if parts.query else "")


def _body_size(data, json_body) -> int:
    # JSON bodies are not measured: that would encode them a second time.
    return len(data) if isinstance(data, (bytes, str)) else 0


def chunked(items: list, size: int):
    """Consecutive slices of at most `size` items."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------------- credentials
@dataclass(frozen=True)
class Credentials:
    """A connection's base URL, token and extras. repr() never shows the token."""
    base_url: str
    token: str | None = field(default=None, repr=False)
    extra: dict = field(default_factory=dict)
    login: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(base_url={self.base_url!r}, token={'***' if self.token else None}, " \
               f"extra keys={sorted(self.extra)})"


_RESOLVERS: list[Callable[[str], Credentials | None]] = []


def register_credentials_resolver(resolver: Callable[[str], Credentials | None]) -> None:
    """Add a resolver (conn_id -> Credentials or None), tried before the environment.

    slowburn.airflow.connectors needs no registration: when loaded, its resolve_credentials is used.
    """
    if resolver not in _RESOLVERS:
        _RESOLVERS.insert(0, resolver)


def credentials_for(conn_id: str, *, default_base_url: str | None = None) -> Credentials:
    """The credentials of connection `conn_id`: registered resolvers first, then the environment.

    The environment may hold ``SLOWBURN_CONN_<ID>`` or ``AIRFLOW_CONN_<ID>`` (upper-cased id) as
    Airflow's JSON connection form: {"host": base URL, "password": token, "login": ..., "extra": {...}}.
    """
    resolvers = list(_RESOLVERS)
    # The Airflow adapter, when the process loaded it (a DAG file imports it), resolves Connections. It is
    # looked up rather than imported: the core never imports Airflow, and the adapter never has to import
    # this package (and pandas) while a DAG file is parsed.
    adapter = sys.modules.get("slowburn.airflow.connectors")
    if adapter is not None and getattr(adapter, "resolve_credentials", None) not in (None, *resolvers):
        resolvers.append(adapter.resolve_credentials)
    for resolver in resolvers:
        found = resolver(conn_id)
        if found is not None:
            return _with_default(found, default_base_url)
    env_key = re.sub(r"[^A-Z0-9]", "_", conn_id.upper())
    for prefix in ("SLOWBURN_CONN_", "AIRFLOW_CONN_"):
        raw = os.environ.get(prefix + env_key)
        if raw:
            return _with_default(_parse_connection_json(raw, conn_id), default_base_url)
    raise ConnectorError(f"connection {conn_id!r} is not defined: create it in Airflow, or set "
                         f"SLOWBURN_CONN_{env_key} to JSON like "
                         f'{{"host": "https://api.example.com", "password": "<token>"}}')


def _with_default(creds: Credentials, default_base_url: str | None) -> Credentials:
    if not creds.base_url and default_base_url:
        return Credentials(default_base_url, creds.token, creds.extra, creds.login)
    return creds


def _parse_connection_json(raw: str, conn_id: str) -> Credentials:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ConnectorError(f"connection {conn_id!r}: the environment value is not JSON; use Airflow's JSON "
                             f"connection form with host (base URL) and password (token)") from None
    if not isinstance(doc, dict):
        raise ConnectorError(f"connection {conn_id!r}: expected a JSON object")
    extra = doc.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra else {}
        except ValueError:
            raise ConnectorError(f"connection {conn_id!r}: `extra` is not JSON") from None
    token = doc.get("password") or extra.get("token") or extra.get("api_key") or extra.get("access_token")
    return connection_credentials(doc.get("host"), token, extra, login=doc.get("login"), port=doc.get("port"),
                                  schema=doc.get("schema"))


def connection_credentials(host: str | None, token: str | None, extra: dict | None, *, login: str | None = None,
                           port: int | None = None, schema: str | None = None) -> Credentials:
    """Credentials from Connection fields: host is the base URL (scheme included; http:// for loopback)."""
    extra = dict(extra or {})
    token = token or extra.get("token") or extra.get("api_key") or extra.get("access_token")
    base = (host or extra.get("base_url") or "").strip()
    if base and "://" not in base:
        base = f"{schema if schema in ('http', 'https') else 'https'}://{base}"
    if base and port and not urlsplit(base).port:
        parts = urlsplit(base)
        base = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
    register_secret(token)
    for key in SECRET_EXTRAS:
        register_secret(extra.get(key))
    return Credentials(base.rstrip("/"), token, extra, login)


# Connection extras that hold secrets: registered so that redact() blanks them wherever they appear.
SECRET_EXTRAS = ("token", "api_key", "access_token", "refresh_token", "client_secret", "private_key")


# ---------------------------------------------------------------------------------------------- OAuth
class RenewableToken:
    """An access token that can be fetched again (OAuth refresh-token or JWT bearer grant).

    `fetch(previous_grant)` returns the token endpoint's JSON ({"access_token", ...}); it gets the last grant
    so that a rotated refresh token is used next time. `renew(stale)` fetches once however many threads saw
    the same expired token. A fixed token (`fetch=None`) cannot be renewed.
    """

    def __init__(self, fetch: Callable[[dict], dict] | None = None, token: str | None = None, *,
                 vendor: str = "api"):
        self._fetch, self.vendor = fetch, vendor
        self._lock = threading.Lock()
        self._token = token
        self.grant: dict = {}
        self.renewals = 0
        register_secret(token)

    @property
    def renewable(self) -> bool:
        return self._fetch is not None

    @property
    def token(self) -> str:
        if self._token is None:
            self.renew(stale=None)
        return self._token

    def renew(self, stale: str | None) -> str:
        with self._lock:
            if self._token is not None and self._token != stale:
                return self._token  # another thread renewed it already
            if self._fetch is None:
                raise ConnectorError(f"{self.vendor}: the access token was refused and the connection has no way to "
                                     f"get a new one (give it a refresh token or a JWT key)", vendor=self.vendor,
                                     status=401)
            grant = self._fetch(self.grant)
            token = grant.get("access_token")
            if not token:
                raise ConnectorError(f"{self.vendor}: the token endpoint answered without an access_token",
                                     vendor=self.vendor)
            register_secret(token)
            register_secret(grant.get("refresh_token"))
            self._token, self.grant = token, grant
            self.renewals += 1
            return token


def oauth_token_request(token_url: str, form: dict, *, vendor: str, session: requests.Session | None = None,
                        timeout=(10.0, 60.0), verify: bool | str = True) -> dict:
    """POST an OAuth 2.0 token request (application/x-www-form-urlencoded) and return its JSON.

    Errors name the endpoint and OAuth's error code, never the secrets in the form.
    """
    for key in ("client_secret", "refresh_token", "assertion", "code"):
        register_secret(form.get(key))
    http = session or requests
    what = f"{vendor} token request to {_path_of(token_url)} (grant {form.get('grant_type')})"
    try:
        resp = http.post(token_url, data=form, timeout=timeout, verify=verify,
                         headers={"Accept": "application/json", "User-Agent": USER_AGENT})
    except _TRANSIENT as exc:
        raise ConnectorError(f"{what}: no answer ({type(exc).__name__}: {redact(exc)})", vendor=vendor,
                             retryable=True) from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        code = (body.get("error") or body.get("status")) if isinstance(body, dict) else None
        detail = (body.get("error_description") or body.get("message")) if isinstance(body, dict) else None
        raise ConnectorError(f"{what} failed: HTTP {resp.status_code} {code or ''}: {detail or resp.text[:300]} "
                             f"(check the client id, secret, refresh token or key in the connection)",
                             vendor=vendor, status=resp.status_code, code=code, retryable=resp.status_code >= 500)
    register_secret(body.get("access_token"))
    register_secret(body.get("refresh_token"))
    return body
