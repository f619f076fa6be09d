"""A loopback Mailchimp Marketing API 3.0 server: list members, member PUT/PATCH, tags, batch operations.

Documented behaviour it keeps: members are addressed by the MD5 of the lowercased email; a PUT creates
a member with ``status_if_new`` and never changes an existing member's status unless ``status`` is
given; an unsubscribed or cleaned member cannot be set back to subscribed by the API ("Member In
Compliance State"); tags are POSTed as {"tags": [{"name", "status": active|inactive}]} and answer 204;
``POST /batches`` takes operations whose body is a JSON string, runs them, and publishes a tar.gz of
[{"status_code", "operation_id", "response"}]; errors are problem documents
{"type", "title", "status", "detail", "instance", "errors"}; at most 10 simultaneous connections.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import io
import itertools
import json
import re
import tarfile
import threading

import pandas as pd
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from fakes.base import FakeServer, correlation_id, json_response, parse_json

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_EPOCH = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")


def md5(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


class FakeMailchimp(FakeServer):
    vendor = "mailchimp"

    def __init__(self, *, list_ids=("aud1",), max_connections: int = 10, batch_polls: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.lists: dict[str, dict[str, dict]] = {lid: {} for lid in list_ids}
        self.max_connections = max_connections
        self.batch_polls = batch_polls
        self.in_flight = 0
        self.peak_in_flight = 0
        self.batches: dict[str, dict] = {}
        self.archives: dict[str, bytes] = {}
        self.subscribe_events: list[str] = []   # every email that became subscribed, in order
        self.member_puts: list[tuple[str, dict]] = []
        self.tag_posts: list[tuple[str, list]] = []
        self.campaigns: dict[str, dict] = {}      # id -> {"id", "send_time", "list_id", "activity": {hash: [...]},
        #                                            "unsubscribes": [...]}
        self._ids = itertools.count(1)
        self._clock = itertools.count()
        self._data_lock = threading.RLock()
        lst = r"/3\.0/lists/(?P<list_id>[^/]+)"
        self.routes = [
            ("GET", re.compile(rf"{lst}/members"), self.list_members),
            ("PUT", re.compile(rf"{lst}/members/(?P<member>[^/]+)"), self.put_member),
            ("PATCH", re.compile(rf"{lst}/members/(?P<member>[^/]+)"), self.patch_member),
            ("POST", re.compile(rf"{lst}/members/(?P<member>[^/]+)/tags"), self.post_tags),
            ("POST", re.compile(r"/3\.0/batches"), self.create_batch),
            ("GET", re.compile(r"/3\.0/batches/(?P<batch_id>[^/]+)"), self.get_batch),
            ("GET", re.compile(r"/_archives/(?P<batch_id>[^/]+)\.tar\.gz"), self.get_archive),
            ("GET", re.compile(r"/oauth2/metadata"), self.oauth_metadata),
            ("GET", re.compile(r"/3\.0/campaigns"), self.list_campaigns),
            ("GET", re.compile(r"/3\.0/reports/(?P<campaign_id>[^/]+)/email-activity"), self.email_activity),
            ("GET", re.compile(r"/3\.0/reports/(?P<campaign_id>[^/]+)/unsubscribed"), self.unsubscribed),
        ]

    @property
    def api_url(self) -> str:
        return f"{self.url}/3.0"

    # ------------------------------------------------------------------------------------ vendor shape
    def problem(self, status, message, *, code=None, title=None, errors=None, **extra):
        titles = {400: "Invalid Resource", 401: "API Key Invalid", 403: "Forbidden", 404: "Resource Not Found",
                  405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
                  503: "Service Unavailable"}
        body = {"type": "https://mailchimp.com/developer/marketing/docs/errors/",
                "title": title or titles.get(status, "Error"), "status": status, "detail": message,
                "instance": correlation_id()}
        if errors:
            body["errors"] = errors
        return Response(json.dumps(body), status=status, mimetype="application/problem+json")

    def authorized(self, req: Request) -> bool:
        if req.path.startswith("/_archives/"):
            return "Authorization" not in req.headers  # the archive host must never see our key
        if req.path == "/oauth2/metadata":
            return req.headers.get("Authorization") == f"OAuth {self.token}"
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                _, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return key == self.token
        return auth == f"Bearer {self.token}"

    def unauthorized(self):
        return self.problem(401, "Your API key may be invalid, or you've attempted to access the wrong datacenter.")

    def throttled(self):
        return self.problem(429, "You have exceeded the limit of 10 simultaneous connections.")

    def exempt(self, req):
        return req.path.startswith("/_archives/") or req.path == "/oauth2/metadata"

    def oauth_metadata(self, req):
        """login.mailchimp.com/oauth2/metadata: the data centre of the account an OAuth token belongs to."""
        return json_response({"dc": "us6", "role": "owner", "accountname": "Acme", "user_id": 1,
                              "login": {"login_id": 1}, "login_url": "https://login.mailchimp.com",
                              "api_endpoint": self.url})

    def handle(self, req):
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            too_many = self.in_flight > self.max_connections
        try:
            if too_many:
                resp = self.throttled()
                resp.headers["Retry-After"] = self.faults.retry_after
                with self.lock:
                    self.injected["429"] += 1
                return resp
            return super().handle(req)
        finally:
            with self.lock:
                self.in_flight -= 1

    # ------------------------------------------------------------------------------------ seeding
    def add_member(self, list_id: str, email: str, status: str = "subscribed", **merge) -> str:
        with self._data_lock:
            h = md5(email)
            self.lists[list_id][h] = {"id": h, "email_address": email, "status": status, "merge_fields": dict(merge),
                                      "tags": {}, "last_changed": self._stamp(), "list_id": list_id,
                                      "timestamp_opt": "", "unsubscribe_reason": "", "source": "API - Generic",
                                      "stats": {"avg_open_rate": 0, "avg_click_rate": 0}}
            return h

    # ------------------------------------------------------------------------------------ campaign reports
    def add_campaign(self, campaign_id: str, list_id: str, send_time: str) -> None:
        self.campaigns[campaign_id] = {"id": campaign_id, "send_time": send_time, "list_id": list_id,
                                       "activity": {}, "unsubscribes": []}

    def add_activity(self, campaign_id: str, email: str, action: str, timestamp: str, url: str | None = None,
                     bounce_type: str | None = None) -> None:
        item = {"action": action, "timestamp": timestamp, "ip": "203.0.113.9"}
        if url:
            item["url"] = url
        if bounce_type:
            item["type"] = bounce_type
        self.campaigns[campaign_id]["activity"].setdefault(email, []).append(item)

    def add_unsubscribe(self, campaign_id: str, email: str, timestamp: str, reason: str = "N/A") -> None:
        self.campaigns[campaign_id]["unsubscribes"].append({"email_id": md5(email), "email_address": email,
                                                            "timestamp": timestamp, "reason": reason,
                                                            "campaign_id": campaign_id})

    def _page(self, req, items, key, **extra):
        count, offset = int(req.args.get("count", 10)), int(req.args.get("offset", 0))
        if count > 1000:
            return self.problem(400, "count may not exceed 1000")
        return json_response({key: items[offset:offset + count], "total_items": len(items), **extra})

    def list_campaigns(self, req):
        since = req.args.get("since_send_time")
        rows = [c for c in self.campaigns.values()
                if (not req.args.get("list_id") or c["list_id"] == req.args["list_id"])
                and (not since or pd.Timestamp(c["send_time"]) >= pd.Timestamp(since))]
        rows.sort(key=lambda c: c["send_time"])
        return self._page(req, [{"id": c["id"], "send_time": c["send_time"], "recipients": {"list_id": c["list_id"]},
                                 "settings": {"title": f"Campaign {c['id']}"}} for c in rows], "campaigns")

    def email_activity(self, req, campaign_id):
        c = self.campaigns.get(campaign_id)
        if c is None:
            return self.problem(404, "The requested resource could not be found.")
        since = pd.Timestamp(req.args["since"]) if req.args.get("since") else None
        emails = []
        for email, acts in sorted(c["activity"].items()):
            kept = [a for a in acts if since is None or pd.Timestamp(a["timestamp"]) > since]
            if kept:
                emails.append({"campaign_id": campaign_id, "list_id": c["list_id"], "list_is_active": True,
                               "email_id": md5(email), "email_address": email, "activity": kept})
        return self._page(req, emails, "emails", campaign_id=campaign_id)

    def unsubscribed(self, req, campaign_id):
        c = self.campaigns.get(campaign_id)
        if c is None:
            return self.problem(404, "The requested resource could not be found.")
        return self._page(req, c["unsubscribes"], "unsubscribes", campaign_id=campaign_id)

    def _stamp(self) -> str:
        t = _EPOCH + datetime.timedelta(seconds=next(self._clock))
        return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")

    def member(self, list_id: str, email: str) -> dict | None:
        return self.lists[list_id].get(md5(email))

    # ------------------------------------------------------------------------------------ handlers
    def _view(self, m):
        return {**{k: v for k, v in m.items() if k != "tags"},
                "tags": [{"id": i, "name": n} for i, n in enumerate(sorted(t for t, on in m["tags"].items() if on))]}

    def list_members(self, req, list_id):
        if list_id not in self.lists:
            return self.problem(404, "The requested resource could not be found.")
        count = int(req.args.get("count", 10))
        offset = int(req.args.get("offset", 0))
        if count > 1000:
            return self.problem(400, "count may not be greater than 1000",
                                errors=[{"field": "count", "message": "Must be at most 1000"}])
        with self._data_lock:
            rows = list(self.lists[list_id].values())
        since = req.args.get("since_last_changed")
        if since:
            rows = [m for m in rows if pd.Timestamp(m["last_changed"]) > pd.Timestamp(since)]
        if req.args.get("status"):
            rows = [m for m in rows if m["status"] == req.args["status"]]
        if req.args.get("sort_field") == "last_changed":
            rows.sort(key=lambda m: (m["last_changed"], m["id"]), reverse=req.args.get("sort_dir") == "DESC")
        page = [self._view(m) for m in rows[offset:offset + count]]
        return json_response({"members": page, "list_id": list_id, "total_items": len(rows)})

    def put_member(self, req, list_id, member):
        try:
            body = parse_json(req)
        except ValueError:
            return self.problem(400, "The resource submitted could not be validated. For field-specific details, "
                                     "see the 'errors' array.",
                                errors=[{"field": "", "message": "Schema describes object, NULL found instead"}])
        return self._put(list_id, member, body)

    def _put(self, list_id, member, body):
        if list_id not in self.lists:
            return self.problem(404, "The requested resource could not be found.")
        email = body.get("email_address")
        if not isinstance(email, str) or not EMAIL.match(email):
            return self.problem(400, "The resource submitted could not be validated. For field-specific details, "
                                     "see the 'errors' array.",
                                errors=[{"field": "email_address", "message": "Please provide a valid email address."}])
        if md5(email) != member:
            return self.problem(400, "The subscriber hash in the URL does not match the email address.",
                                errors=[{"field": "email_address", "message": "does not match the subscriber hash"}])
        for key in ("status", "status_if_new"):
            if key in body and body[key] not in STATUSES:
                return self.problem(400, "The resource submitted could not be validated.",
                                    errors=[{"field": key, "message": f"Value is not one of {list(STATUSES)}"}])
        with self._data_lock:
            self.member_puts.append((email, dict(body)))
            existing = self.lists[list_id].get(member)
            if existing is None:
                status = body.get("status") or body.get("status_if_new")
                if not status:
                    return self.problem(400, "The resource submitted could not be validated.",
                                        errors=[{"field": "status", "message": "status or status_if_new is required "
                                                                              "for a new member"}])
                self.add_member(list_id, email, status, **(body.get("merge_fields") or {}))
                if status == "subscribed":
                    self.subscribe_events.append(email)
                return json_response(self._view(self.lists[list_id][member]))
            if body.get("status") == "subscribed" and existing["status"] in ("unsubscribed", "cleaned"):
                title = "Member In Compliance State" if existing["status"] == "unsubscribed" else "Forgotten Email " \
                                                                                                    "Not Subscribed"
                return self.problem(400, f"{email} is already a list member in compliance state due to unsubscribe, "
                                         f"bounce, or compliance review and cannot be subscribed.", title=title)
            if body.get("status") and body["status"] != existing["status"]:
                if body["status"] == "subscribed":
                    self.subscribe_events.append(email)
                existing["status"] = body["status"]
            existing["merge_fields"].update(body.get("merge_fields") or {})
            existing["last_changed"] = self._stamp()
            return json_response(self._view(existing))

    def patch_member(self, req, list_id, member):
        try:
            body = parse_json(req)
        except ValueError:
            return self.problem(400, "The resource submitted could not be validated.")
        with self._data_lock:
            existing = self.lists.get(list_id, {}).get(member)
            if existing is None:
                return self.problem(404, "The requested resource could not be found.")
            if body.get("status") == "subscribed" and existing["status"] in ("unsubscribed", "cleaned"):
                return self.problem(400, "member in compliance state", title="Member In Compliance State")
            if body.get("status"):
                existing["status"] = body["status"]
            existing["last_changed"] = self._stamp()
            return json_response(self._view(existing))

    def post_tags(self, req, list_id, member):
        try:
            body = parse_json(req)
        except ValueError:
            return self.problem(400, "The resource submitted could not be validated.")
        return self._tags(list_id, member, body)

    def _tags(self, list_id, member, body):
        tags = body.get("tags")
        if not isinstance(tags, list) or any(not isinstance(t, dict) or not t.get("name")
                                             or t.get("status") not in ("active", "inactive") for t in tags):
            return self.problem(400, "The resource submitted could not be validated.",
                                errors=[{"field": "tags", "message": "each tag needs name and status active|inactive"}])
        with self._data_lock:
            existing = self.lists.get(list_id, {}).get(member)
            if existing is None:
                return self.problem(404, "The requested resource could not be found.")
            self.tag_posts.append((existing["email_address"], [dict(t) for t in tags]))
            for t in tags:
                existing["tags"][t["name"]] = t["status"] == "active"
        return Response(status=204)

    # ------------------------------------------------------------------------------------ batches
    def create_batch(self, req):
        try:
            body = parse_json(req)
        except ValueError:
            return self.problem(400, "The resource submitted could not be validated.")
        ops = body.get("operations")
        if not isinstance(ops, list) or not ops:
            return self.problem(400, "The resource submitted could not be validated.",
                                errors=[{"field": "operations", "message": "Required"}])
        for op in ops:
            if op.get("method") not in ("GET", "POST", "PUT", "PATCH", "DELETE") or not op.get("path"):
                return self.problem(400, "The resource submitted could not be validated.",
                                    errors=[{"field": "operations.method", "message": "method and path required"}])
            if "body" in op and not isinstance(op["body"], str):
                return self.problem(400, "The resource submitted could not be validated.",
                                    errors=[{"field": "operations.body", "message": "must be a JSON string"}])
        batch_id = f"b{next(self._ids):06d}"
        with self._data_lock:
            self.batches[batch_id] = {"id": batch_id, "status": "pending", "ops": ops, "polls": 0,
                                      "total_operations": len(ops), "finished_operations": 0,
                                      "errored_operations": 0, "response_body_url": ""}
        return json_response(self._batch_view(batch_id))

    def _batch_view(self, batch_id):
        b = self.batches[batch_id]
        return {k: v for k, v in b.items() if k not in ("ops", "polls")}

    def get_batch(self, req, batch_id):
        with self._data_lock:
            b = self.batches.get(batch_id)
            if b is None:
                return self.problem(404, "The requested resource could not be found.")
            b["polls"] += 1
            if b["status"] != "finished" and b["polls"] >= self.batch_polls:
                self._run_batch(b)
            elif b["status"] == "pending":
                b["status"] = "started"
            return json_response(self._batch_view(batch_id))

    def _run_batch(self, b):
        results, errored = [], 0
        member_path = re.compile(r"/lists/(?P<list_id>[^/]+)/members/(?P<member>[^/]+)(?P<tags>/tags)?")
        for op in b["ops"]:
            m = member_path.fullmatch(op["path"])
            try:
                body = json.loads(op.get("body") or "null")
            except ValueError:
                body = None
            if m and isinstance(body, dict) and op["method"] == "PUT" and not m["tags"]:
                resp = self._put(m["list_id"], m["member"], body)
            elif m and isinstance(body, dict) and op["method"] == "POST" and m["tags"]:
                resp = self._tags(m["list_id"], m["member"], body)
            else:  # anything else goes through the full router, as its own request would
                builder = EnvironBuilder(method=op["method"], path="/3.0" + op["path"], data=op.get("body") or "",
                                         content_type="application/json")
                resp = self.dispatch(Request(builder.get_environ()))
            text = resp.get_data(as_text=True)
            if resp.status_code >= 400:
                errored += 1
            results.append({"status_code": resp.status_code, "operation_id": op.get("operation_id"),
                            "response": text or "{}"})
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            payload = json.dumps(results).encode()
            info = tarfile.TarInfo(name=f"{b['id']}/part-0.json")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        self.archives[b["id"]] = buf.getvalue()
        b.update(status="finished", finished_operations=len(b["ops"]), errored_operations=errored,
                 response_body_url=f"{self.url}/_archives/{b['id']}.tar.gz")

    def get_archive(self, req, batch_id):
        data = self.archives.get(batch_id)
        if data is None:
            return Response("NoSuchKey", status=404)
        return Response(data, mimetype="application/x-gzip")
