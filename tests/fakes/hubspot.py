"""A loopback HubSpot CRM v3 server: objects list/search/batch, v4 associations, HubSpot's errors and limits.

Documented behaviour it keeps: list pages of at most 100 with ``paging.next.after``; search pages of at
most 200, a 400 past 10,000 results, filters GT/GTE/LT/LTE/EQ on dates as epoch ms; batch/update and
batch/upsert of at most 100 inputs, a whole-batch 400 VALIDATION_ERROR for an unknown or invalid
property or duplicate ids, 207 with OBJECT_NOT_FOUND for unknown ids; upsert only by a unique
property; error bodies {"status": "error", "message", "correlationId", "category", "errors"}; 429 bodies
with policyName and the X-HubSpot-RateLimit-* headers. Search cursors (``paging.next.after``) are opaque
strings, as the spec says (not the digits HubSpot happens to send today); property values must be strings
(a null is a 400, "" clears). ``POST /oauth/v1/token`` answers the refresh-token grant of a known app with a
new access token; ``expire_sessions()`` makes issued tokens answer 401 as HubSpot does after 30 minutes.
"""
from __future__ import annotations

import base64
import bisect
import itertools
import json
import re
import secrets
import threading

import pandas as pd
from werkzeug.wrappers import Request, Response

from fakes.base import FakeServer, correlation_id, json_response, parse_json

DATE_PROPERTIES = {"lastmodifieddate", "hs_lastmodifieddate", "createdate", "hs_createdate", "hs_timestamp",
                   "closedate", "notes_last_updated"}
NUMBER_PROPERTIES = {"slowburn_score", "hs_object_id"}
CONTACT_PROPERTIES = {
    "email", "firstname", "lastname", "phone", "company", "jobtitle", "website", "address", "city", "state", "zip",
    "country", "hubspot_owner_id", "hs_lead_status", "lifecyclestage", "hs_analytics_source", "createdate",
    "lastmodifieddate", "notes_last_updated", "hs_email_optout", "hs_object_id",
    "slowburn_score", "slowburn_tier", "slowburn_queue", "slowburn_segment", "slowburn_respond_by"}
ENGAGEMENT_PROPERTIES = {"hs_timestamp", "hs_lastmodifieddate", "hs_createdate", "hubspot_owner_id", "hs_object_id",
                         "hs_meeting_title", "hs_call_direction", "hs_email_direction", "hs_email_subject",
                         "hs_meeting_outcome", "hs_call_status"}
TASK_PROPERTIES = ENGAGEMENT_PROPERTIES | {"hs_task_subject", "hs_task_body", "hs_task_status", "hs_task_priority",
                                           "hs_task_type", "slowburn_key"}
UNIQUE = {"contacts": {"email", "hs_object_id"}, "tasks": {"slowburn_key", "hs_object_id"}}


def iso_ms(stamp) -> str:
    return pd.Timestamp(stamp).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{pd.Timestamp(stamp).microsecond // 1000:03d}Z"


def to_ms(value) -> int | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text)
    stamp = pd.Timestamp(text)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return int(stamp.value // 1_000_000)


class FakeHubSpot(FakeServer):
    vendor = "hubspot"

    def __init__(self, *, page_cap: int = 10_000, apps: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.page_cap = page_cap
        self.apps = apps or {}     # client_id -> {"secret": ..., "refresh_token": ...}
        self.refreshes = 0
        self.objects: dict[str, dict[str, dict]] = {t: {} for t in ("contacts", "calls", "meetings", "emails",
                                                                       "notes", "tasks")}
        self.properties = {"contacts": CONTACT_PROPERTIES, "tasks": TASK_PROPERTIES}
        self.associations: dict[tuple[str, str], set[str]] = {}
        self.writes: list[tuple[str, str, str, dict]] = []   # (object, verb, id, properties)
        self._ids = itertools.count(1001)
        self._data_lock = threading.RLock()
        self._sorted: dict[str, list[int]] = {}
        o = r"(?P<object_type>[a-z_]+)"
        self.routes = [
            ("POST", re.compile(r"/oauth/v1/token"), self.oauth_token),
            ("GET", re.compile(rf"/crm/v3/objects/{o}"), self.list_objects),
            ("POST", re.compile(rf"/crm/v3/objects/{o}/search"), self.search),
            ("POST", re.compile(rf"/crm/v3/objects/{o}/batch/update"), self.batch_update),
            ("POST", re.compile(rf"/crm/v3/objects/{o}/batch/read"), self.batch_read),
            ("POST", re.compile(rf"/crm/v3/objects/{o}/batch/upsert"), self.batch_upsert),
            ("POST", re.compile(rf"/crm/v4/associations/{o}/contacts/batch/read"), self.assoc_read),
            ("POST", re.compile(r"/crm/v4/associations/tasks/contacts/batch/associate/default"), self.associate),
        ]

    # ------------------------------------------------------------------------------------ vendor shape
    def problem(self, status, message, *, code=None, category="VALIDATION_ERROR", errors=None, **extra):
        body = {"status": "error", "message": message, "correlationId": correlation_id(), "category": category}
        if errors:
            body["errors"] = errors
        body.update(extra)
        return json_response(body, status)

    def unauthorized(self):
        return self.problem(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                                 "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                                 "oauth-overview", category="INVALID_AUTHENTICATION")

    def throttled(self):
        return json_response({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                              "errorType": "RATE_LIMIT", "correlationId": correlation_id(),
                              "policyName": "TEN_SECONDLY_ROLLING", "groupName": "privateapps:1"}, 429)

    def server_error(self, status):
        return self.problem(status, "internal error", category="INTERNAL_ERROR")

    # ------------------------------------------------------------------------------------ OAuth
    def exempt(self, req):
        return req.path == "/oauth/v1/token"

    def authorized(self, req):
        return self.exempt(req) or super().authorized(req)

    def oauth_token(self, req: Request):
        form = req.form
        app = self.apps.get(form.get("client_id"))
        if form.get("grant_type") != "refresh_token":
            return json_response({"status": "BAD_GRANT_TYPE", "message": "grant_type must be refresh_token"}, 400)
        if app is None or form.get("client_secret") != app.get("secret"):
            return json_response({"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"}, 400)
        if form.get("refresh_token") != app.get("refresh_token"):
            return json_response({"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}, 400)
        token = f"CNf{secrets.token_urlsafe(32)}"
        with self.lock:
            self.sessions.add(token)
            self.refreshes += 1
        return json_response({"access_token": token, "refresh_token": app["refresh_token"], "expires_in": 1800,
                              "token_type": "bearer"})

    def rate_headers(self, remaining):
        if not self.faults.window:
            return {}
        limit, seconds = self.faults.window
        return {"X-HubSpot-RateLimit-Max": str(limit),
                "X-HubSpot-RateLimit-Remaining": str(limit if remaining is None else remaining),
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(seconds * 1000))}

    # ------------------------------------------------------------------------------------ seeding
    def add(self, object_type: str, properties: dict, *, modified=None, object_id: str | None = None,
            contacts: list[str] | None = None) -> str:
        with self._data_lock:
            oid = object_id or str(next(self._ids))
            stamp = pd.Timestamp(modified or "2026-11-01T00:00:00Z")
            wm = "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"
            props = {k: (None if v is None else str(v)) for k, v in properties.items()}
            props.setdefault(wm, iso_ms(stamp))
            props["hs_object_id"] = oid
            created = props.get("createdate") or props[wm]
            self.objects.setdefault(object_type, {})[oid] = {
                "id": oid, "properties": props, "createdAt": created, "updatedAt": props[wm], "archived": False}
            for c in contacts or []:
                self.associations.setdefault((object_type, oid), set()).add(str(c))
            return oid

    def _sorted_ids(self, object_type: str) -> list[int]:
        cached = self._sorted.get(object_type)
        if cached is None or len(cached) != len(self.objects[object_type]):
            cached = self._sorted[object_type] = sorted(int(i) for i in self.objects[object_type])
        return cached

    def set_with_history(self, object_type: str, oid: str, prop: str, value, at) -> None:
        """Set a property as HubSpot does when something happens: the value, its history, the modified time."""
        with self._data_lock:
            rec = self.objects[object_type][oid]
            rec.setdefault("history", {}).setdefault(prop, []).insert(0, {
                "value": str(value), "timestamp": iso_ms(pd.Timestamp(at)), "sourceType": "EMAIL"})
            rec["properties"][prop] = str(value)
        self.touch(object_type, oid, at)

    def touch(self, object_type: str, oid: str, modified) -> None:
        wm = "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"
        with self._data_lock:
            rec = self.objects[object_type][oid]
            rec["properties"][wm] = rec["updatedAt"] = iso_ms(pd.Timestamp(modified))

    # ------------------------------------------------------------------------------------ reads
    def _view(self, rec, props):
        values = rec["properties"]
        wanted = set(props) | {"hs_object_id", "createdate", "lastmodifieddate"} if props else set(values)
        return {"id": rec["id"], "properties": {p: values.get(p) for p in wanted},
                "createdAt": rec["createdAt"], "updatedAt": rec["updatedAt"], "archived": rec["archived"]}

    def list_objects(self, req: Request, object_type):
        if object_type not in self.objects:
            return self.problem(400, f"Unable to infer object type from: {object_type}")
        try:
            limit = int(req.args.get("limit", 10))
        except ValueError:
            return self.problem(400, "limit must be a number")
        if limit > 100:
            return self.problem(400, f"limit may not exceed 100, got {limit}")
        props = [p for p in req.args.get("properties", "").split(",") if p]
        with self._data_lock:
            ids = self._sorted_ids(object_type)
            start = bisect.bisect_left(ids, int(req.args["after"])) if req.args.get("after") else 0
            page = [self._view(self.objects[object_type][str(i)], props) for i in ids[start:start + limit]]
        body = {"results": page}
        if start + limit < len(ids):
            nxt = str(ids[start + limit])
            body["paging"] = {"next": {"after": nxt, "link": f"{self.url}/crm/v3/objects/{object_type}?after={nxt}"}}
        return json_response(body)

    def batch_read(self, req: Request, object_type):
        body = parse_json(req)
        inputs = body.get("inputs") or []
        if len(inputs) > 100:
            return self.problem(400, f"The maximum number of inputs supported in a batch request is 100, got "
                                     f"{len(inputs)}")
        results, missing = [], []
        with self._data_lock:
            for item in inputs:
                rec = self.objects.get(object_type, {}).get(str(item.get("id")))
                if rec is None:
                    missing.append(str(item.get("id")))
                    continue
                view = self._view(rec, body.get("properties") or [])
                history = rec.get("history", {})
                view["propertiesWithHistory"] = {p: list(history.get(p, [])) for p in body.get("propertiesWithHistory")
                                                 or []}
                results.append(view)
        out = {"status": "COMPLETE", "results": results, "startedAt": iso_ms(pd.Timestamp.now(tz="UTC")),
               "completedAt": iso_ms(pd.Timestamp.now(tz="UTC"))}
        if missing:
            out["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": "not found",
                              "context": {"ids": missing}}]
            return json_response(out, 207)
        return json_response(out)

    def search(self, req: Request, object_type):
        try:
            body = parse_json(req)
        except ValueError as exc:
            return self.problem(400, f"Invalid input JSON on line 1, column 1: {exc}")
        limit = int(body.get("limit", 10))
        try:
            after = _offset(body.get("after"))
        except ValueError:
            return self.problem(400, f"Invalid paging cursor: {body.get('after')!r}")
        if limit > 200:
            return self.problem(400, f"There was a problem with the request. limit must be at most 200, got {limit}")
        if after >= self.page_cap:
            return self.problem(400, f"Search results are limited to {self.page_cap} items; after={after} is out of "
                                     f"range. Narrow the search with filters.")
        sorts = body.get("sorts") or [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
        if len(sorts) > 1:
            return self.problem(400, "Only one sort is supported")
        groups = body.get("filterGroups") or []
        with self._data_lock:
            rows = [r for r in self.objects.get(object_type, {}).values() if _matches(r, groups)]
        key = sorts[0]["propertyName"]
        rows.sort(key=lambda r: (_sort_value(key, r["properties"].get(key)), int(r["id"])),
                  reverse=sorts[0].get("direction") == "DESCENDING")
        page = rows[after:after + limit]
        out = {"total": len(rows), "results": [self._view(r, body.get("properties") or []) for r in page]}
        if after + limit < len(rows):
            out["paging"] = {"next": {"after": _cursor(after + limit)}}
        return json_response(out)

    # ------------------------------------------------------------------------------------ writes
    def _check_inputs(self, object_type, body):
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return None, self.problem(400, "Invalid input JSON: inputs is required")
        if len(inputs) > 100:
            return None, self.problem(400, f"The maximum number of inputs supported in a batch request is 100, "
                                           f"got {len(inputs)}")
        allowed = self.properties.get(object_type)
        bad = []
        for item in inputs:
            if not isinstance(item, dict) or "id" not in item or not isinstance(item.get("properties"), dict):
                return None, self.problem(400, "Invalid input JSON: every input needs id and properties")
            for name, value in item["properties"].items():
                if allowed is not None and name not in allowed:
                    bad.append({"isValid": False, "message": f'Property "{name}" does not exist',
                                "error": "PROPERTY_DOESNT_EXIST", "name": name})
                elif value is None:
                    bad.append({"isValid": False, "error": "INVALID_VALUE", "name": name,
                                "message": f"{name}: null is not a valid value; send \"\" to clear a property"})
                elif name in NUMBER_PROPERTIES and value != "" and not re.fullmatch(r"-?\d+(\.\d+)?",
                                                                                                str(value)):
                    bad.append({"isValid": False, "message": f"{value} was not a valid number.",
                                "error": "INVALID_INTEGER", "name": name})
        if bad:
            return None, self.problem(400, f"Property values were not valid: {json.dumps(bad)}",
                                      errors=[{"message": b["message"], "code": b["error"],
                                               "context": {"propertyName": [b["name"]]}} for b in bad])
        keys = [str(i["id"]) for i in inputs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            return None, self.problem(400, f"Duplicate IDs found in batch input: {dupes}. IDs must be unique")
        return inputs, None

    def batch_update(self, req: Request, object_type):
        try:
            body = parse_json(req)
        except ValueError as exc:
            return self.problem(400, f"Invalid input JSON on line 1, column 1: {exc}")
        inputs, error = self._check_inputs(object_type, body)
        if error:
            return error
        results, missing = [], []
        with self._data_lock:
            for item in inputs:
                rec = self.objects.get(object_type, {}).get(str(item["id"]))
                if rec is None:
                    missing.append(str(item["id"]))
                    continue
                rec["properties"].update({k: (None if v is None else str(v)) for k, v in item["properties"].items()})
                self.writes.append((object_type, "update", rec["id"], dict(item["properties"])))
                results.append(self._view(rec, list(item["properties"])))
        out = {"status": "COMPLETE", "results": results, "startedAt": iso_ms(pd.Timestamp.now(tz="UTC")),
               "completedAt": iso_ms(pd.Timestamp.now(tz="UTC"))}
        if missing:
            out["numErrors"] = 1
            out["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                              "message": f"Could not get some {object_type.upper()} objects, they may be deleted or "
                                         f"not exist. Check that ids are valid.", "context": {"ids": missing}}]
            return json_response(out, 207)
        return json_response(out)

    def batch_upsert(self, req: Request, object_type):
        try:
            body = parse_json(req)
        except ValueError as exc:
            return self.problem(400, f"Invalid input JSON on line 1, column 1: {exc}")
        inputs, error = self._check_inputs(object_type, body)
        if error:
            return error
        results = []
        with self._data_lock:
            for item in inputs:
                prop = item.get("idProperty")
                if prop not in UNIQUE.get(object_type, set()):
                    return self.problem(400, f"Unable to perform update/upsert by non-unique {object_type} property "
                                             f"{prop}")
                value = str(item["id"])
                found = next((r for r in self.objects[object_type].values() if r["properties"].get(prop) == value),
                             None)
                props = {k: (None if v is None else str(v)) for k, v in item["properties"].items()}
                props[prop] = value
                if found is None:
                    oid = self.add(object_type, props, modified=pd.Timestamp.now(tz="UTC"))
                    found, new = self.objects[object_type][oid], True
                else:
                    found["properties"].update(props)
                    new = False
                self.writes.append((object_type, "upsert", value, dict(props)))
                results.append({**self._view(found, list(props)), "new": new})
        return json_response({"status": "COMPLETE", "results": results})

    def assoc_read(self, req: Request, object_type):
        body = parse_json(req)
        inputs = body.get("inputs") or []
        if len(inputs) > 1000:
            return self.problem(400, f"The maximum number of inputs is 1000, got {len(inputs)}")
        results = []
        with self._data_lock:
            for item in inputs:
                linked = self.associations.get((object_type, str(item["id"])))
                if linked:
                    results.append({"from": {"id": str(item["id"])},
                                    "to": [{"toObjectId": int(c), "associationTypes": [
                                        {"category": "HUBSPOT_DEFINED", "typeId": 194, "label": None}]}
                                        for c in sorted(linked)]})
        return json_response({"status": "COMPLETE", "results": results})

    def associate(self, req: Request):
        body = parse_json(req)
        inputs = body.get("inputs") or []
        if len(inputs) > 1000:
            return self.problem(400, f"The maximum number of inputs is 1000, got {len(inputs)}")
        with self._data_lock:
            for item in inputs:
                self.associations.setdefault(("tasks", str(item["from"]["id"])), set()).add(str(item["to"]["id"]))
        return json_response({"status": "COMPLETE", "results": []})


def _cursor(offset: int) -> str:
    """An opaque search cursor (base64, not digits), as the spec's `after: string` allows."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(cursor) -> int:
    if cursor in (None, ""):
        return 0
    text = base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4)).decode()
    if not text.startswith("offset:"):
        raise ValueError(cursor)
    return int(text[7:])


def _sort_value(prop, value):
    if prop in DATE_PROPERTIES:
        return to_ms(value) or 0
    if prop in NUMBER_PROPERTIES:
        return float(value or 0)
    return str(value or "")


def _matches(rec, groups) -> bool:
    if not groups:
        return True
    return any(all(_test(rec["properties"].get(f["propertyName"]), f) for f in g.get("filters", [])) for g in groups)


def _test(value, flt) -> bool:
    op, target, prop = flt.get("operator", "EQ"), flt.get("value"), flt["propertyName"]
    if value is None:
        return op == "NOT_HAS_PROPERTY"
    if prop in DATE_PROPERTIES:
        a, b = to_ms(value), to_ms(target)
    elif prop in NUMBER_PROPERTIES:
        a, b = float(value), float(target)
    else:
        a, b = str(value), str(target)
    return {"EQ": a == b, "NEQ": a != b, "GT": a > b, "GTE": a >= b, "LT": a < b, "LTE": a <= b,
            "HAS_PROPERTY": True}.get(op, False)
