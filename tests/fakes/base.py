"""The shared machinery of the fake vendor servers: a threaded werkzeug server, recording, faults."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do

    def log_request(self, *args, **kwargs):  # no access log on stderr
        pass

    def log(self, *args, **kwargs):
        pass


@dataclass
class Received:
    method: str
    path: str
    args: dict
    body: bytes
    headers: dict
    status: int = 0
    json: object = None


@dataclass
class Faults:
    """Failure injection, counted over API requests (not archive downloads).

    fail_every: every Nth request answers 5xx before doing anything.
    fail_after_apply_every: every Nth write is applied, then answered 5xx (the answer is "lost").
    throttle_every / throttle_burst: from every Nth request on, `throttle_burst` requests get 429.
    retry_after: the Retry-After header sent with 429 (and with 503).
    window: (max requests, seconds) enforced as a rolling window, 429 past it.
    """
    fail_every: int = 0
    fail_after_apply_every: int = 0
    throttle_every: int = 0
    throttle_burst: int = 1
    retry_after: str = "0"
    window: tuple[int, float] | None = None
    fail_status: int = 503


class FakeServer:
    vendor = "fake"

    def __init__(self, *, token: str = "test-token", faults: Faults | None = None, record_bodies: bool = True):
        self.token = token
        self.sessions: set[str] = {token}   # bearer tokens accepted now; expire_sessions() empties it
        self.faults = faults or Faults()
        self.record_bodies = record_bodies
        self.received: list[Received] = []
        self.lock = threading.RLock()
        self.count = 0
        self.write_count = 0
        self.injected = {"5xx": 0, "429": 0, "lost": 0}
        self._stamps: deque[float] = deque()
        self._server = None
        self._thread = None
        self.url = None
        self.routes: list = []

    # -------------------------------------------------------------------------------- lifecycle
    def start(self) -> "FakeServer":
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        port = self._server.server_port
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-{self.vendor}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -------------------------------------------------------------------------------- vendor hooks
    def problem(self, status: int, message: str, *, code: str | None = None, **extra) -> Response:
        return json_response({"message": message, "code": code, **extra}, status)

    def authorized(self, req: Request) -> bool:
        auth = req.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.sessions

    def expire_sessions(self) -> None:
        """Every token issued so far stops working (answers 401), as when access tokens expire."""
        with self.lock:
            self.sessions.clear()

    def unauthorized(self) -> Response:
        return self.problem(401, "not authorized")

    def rate_headers(self, remaining: int | None) -> dict:
        return {}

    def is_write(self, req: Request) -> bool:
        return req.method in ("POST", "PUT", "PATCH", "DELETE")

    def exempt(self, req: Request) -> bool:
        return False

    # -------------------------------------------------------------------------------- dispatch
    def wsgi(self, environ, start_response):
        req = Request(environ)
        resp = self.handle(req)
        return resp(environ, start_response)

    def handle(self, req: Request) -> Response:
        body = req.get_data(cache=True)
        rec = Received(req.method, req.path, req.args.to_dict(flat=True), body if self.record_bodies else b"",
                       {k: v for k, v in req.headers.items()})
        try:
            rec.json = json.loads(body) if body and "json" in (req.content_type or "") else None
        except ValueError:
            rec.json = None
        exempt = self.exempt(req)
        with self.lock:
            self.received.append(rec)
            if not exempt:
                self.count += 1
            n = self.count
            remaining = None
            if self.faults.window and not exempt:
                limit, seconds = self.faults.window
                now = time.monotonic()
                while self._stamps and self._stamps[0] <= now - seconds:
                    self._stamps.popleft()
                over = len(self._stamps) >= limit
                if not over:
                    self._stamps.append(now)
                remaining = max(0, limit - len(self._stamps))
            else:
                over = False
        if not self.authorized(req):
            return self._done(rec, self.unauthorized())
        f = self.faults
        if not exempt:
            if over or (f.throttle_every and n >= f.throttle_every and (n % f.throttle_every) < f.throttle_burst):
                with self.lock:
                    self.injected["429"] += 1
                resp = self.throttled()
                resp.headers["Retry-After"] = f.retry_after
                resp.headers.update(self.rate_headers(0))
                return self._done(rec, resp)
            if f.fail_every and n % f.fail_every == 0:
                with self.lock:
                    self.injected["5xx"] += 1
                return self._done(rec, self.server_error(f.fail_status))
        resp = self.dispatch(req)
        if not exempt and self.is_write(req) and f.fail_after_apply_every and 200 <= resp.status_code < 300:
            with self.lock:
                self.write_count += 1
                lost = self.write_count % f.fail_after_apply_every == 0
                if lost:
                    self.injected["lost"] += 1
            if lost:
                return self._done(rec, self.server_error(502))
        resp.headers.update(self.rate_headers(remaining))
        return self._done(rec, resp)

    def _done(self, rec: Received, resp: Response) -> Response:
        rec.status = resp.status_code
        return resp

    def dispatch(self, req: Request) -> Response:
        for method, pattern, handler in self.routes:
            if req.method != method:
                continue
            m = pattern.fullmatch(req.path)
            if m:
                return handler(req, **m.groupdict())
        return self.problem(404, f"no route for {req.method} {req.path}")

    def throttled(self) -> Response:
        return self.problem(429, "too many requests")

    def server_error(self, status: int) -> Response:
        return self.problem(status, "internal error, please retry")

    # -------------------------------------------------------------------------------- helpers
    def requests_to(self, method: str, path_part: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.method == method and path_part in r.path]


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or {})


def parse_json(req: Request):
    """The request body as JSON, or raise ValueError with the parser's message."""
    data = req.get_data(cache=True)
    if not data:
        raise ValueError("empty body")
    return json.loads(data)


def correlation_id() -> str:
    return str(uuid.uuid4())
