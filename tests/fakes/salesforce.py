"""A loopback Salesforce REST server: SOQL query with nextRecordsUrl, sObject Collections, Bulk API 2.0 ingest.

Documented behaviour it keeps: ``/services/data/vXX.X/query?q=`` returns {totalSize, done, nextRecordsUrl,
records[{attributes{type,url}, ...}]} in pages (2,000 by default), continued at ``/query/<locator>-<n>``;
a malformed query is 400 [{"message", "errorCode": "MALFORMED_QUERY"}], an unknown field INVALID_FIELD;
``PATCH /composite/sobjects`` (update by id) and ``PATCH /composite/sobjects/{SObject}/{ExternalId}``
(upsert) take at most 200 records (else 400 EXCEEDED_ID_LIMIT) with ``allOrNone`` and answer per record
{id, success, errors[{statusCode, message, fields}], created}; Bulk API 2.0 ingest jobs: create, PUT the
CSV to /batches, PATCH state UploadComplete, GET the job, successfulResults / failedResults /
unprocessedrecords CSVs; in a Bulk CSV an empty cell leaves a field unchanged and ``#N/A`` sets it to null.

Logging in: ``POST /services/oauth2/token`` with the refresh-token grant (client_id, optional client_secret,
refresh_token) or the JWT bearer grant (an RS256 assertion checked against the connected app's public key:
iss = client id, sub = username, aud = the login URL, exp in the future), answering {access_token,
instance_url, ...}. ``expire_sessions()`` makes every issued session answer 401 INVALID_SESSION_ID.
Every API answer carries ``Sforce-Limit-Info: api-usage=N/M`` (M = ``daily_limit``).
"""
from __future__ import annotations

import csv
import io
import itertools
import re
import secrets
import threading
import time

import pandas as pd
from werkzeug.wrappers import Request, Response

from fakes.base import FakeServer, json_response, parse_json

SCHEMA = {
    "Lead": {"Id", "FirstName", "LastName", "Email", "Phone", "Company", "Title", "Website", "Street", "City",
             "State", "PostalCode", "Country", "OwnerId", "Status", "LeadSource", "CreatedDate", "LastModifiedDate",
             "SystemModstamp", "LastActivityDate", "HasOptedOutOfEmail", "DoNotCall", "IsConverted",
             "Slowburn_Score__c", "Slowburn_Tier__c", "Slowburn_Queue__c", "Slowburn_Segment__c",
             "Slowburn_Respond_By__c"},
    "Contact": {"Id", "FirstName", "LastName", "Email", "Phone", "Title", "OwnerId", "CreatedDate",
                "LastModifiedDate", "SystemModstamp", "HasOptedOutOfEmail", "DoNotCall", "LeadSource",
                "Slowburn_Score__c", "Slowburn_Tier__c", "Slowburn_Queue__c", "Slowburn_Segment__c",
                "Slowburn_Respond_By__c"},
    "Task": {"Id", "Subject", "WhoId", "OwnerId", "ActivityDate", "Status", "Priority", "Description", "Type",
             "TaskSubtype", "CreatedDate", "SystemModstamp", "Slowburn_Key__c"},
    "Event": {"Id", "Subject", "WhoId", "OwnerId", "StartDateTime", "Type", "CreatedDate", "SystemModstamp"},
}
NUMBERS = {"Slowburn_Score__c"}
EXTERNAL_IDS = {"Task": {"Slowburn_Key__c"}}
PREFIX = {"Lead": "00Q", "Contact": "003", "Task": "00T", "Event": "00U"}
SOQL = re.compile(r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
                  r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<dir>ASC|DESC))?)?"
                  r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$", re.IGNORECASE | re.DOTALL)
COND = re.compile(r"^\s*\(?\s*(?P<field>\w+)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>'[^']*'|\S+?)\s*\)?\s*$")


class FakeSalesforce(FakeServer):
    vendor = "salesforce"

    def __init__(self, *, page_size: int = 2000, daily_limit: int = 1_000_000, api_used: int = 0,
                 bulk_stop_after: int | None = None, clients: dict | None = None, jwt_public_key=None,
                 jwt_username: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.page_size = page_size
        self.daily_limit, self.api_used = daily_limit, api_used
        self.bulk_stop_after = bulk_stop_after     # a job fails after this many rows; the rest are unprocessed
        self.clients = clients or {}               # client_id -> {"secret": ..., "refresh_token": ...}
        self.jwt_public_key, self.jwt_username = jwt_public_key, jwt_username
        self.logins: list[str] = []                # grant types, in order
        self.objects: dict[str, dict[str, dict]] = {name: {} for name in SCHEMA}
        self.cursors: dict[str, list[dict]] = {}
        self.jobs: dict[str, dict] = {}
        self.writes: list[tuple[str, str, str, dict]] = []   # (sobject, verb, key, fields)
        self._n = itertools.count(1)
        self._data_lock = threading.RLock()
        v = r"/services/data/v(?P<version>\d+\.\d)"
        self.routes = [
            ("POST", re.compile(r"/services/oauth2/token"), self.oauth_token),
            ("GET", re.compile(rf"{v}/query/?"), self.query),
            ("GET", re.compile(rf"{v}/query/(?P<locator>[\w]+)-(?P<offset>\d+)"), self.query_more),
            ("PATCH", re.compile(rf"{v}/composite/sobjects/?"), self.collection_update),
            ("PATCH", re.compile(rf"{v}/composite/sobjects/(?P<sobject>\w+)/(?P<ext>\w+)/?"), self.collection_upsert),
            ("POST", re.compile(rf"{v}/jobs/ingest/?"), self.create_job),
            ("PUT", re.compile(rf"{v}/jobs/ingest/(?P<job>\w+)/batches/?"), self.upload_job),
            ("PATCH", re.compile(rf"{v}/jobs/ingest/(?P<job>\w+)/?"), self.close_job),
            ("GET", re.compile(rf"{v}/jobs/ingest/(?P<job>\w+)/?"), self.get_job),
            ("GET", re.compile(rf"{v}/jobs/ingest/(?P<job>\w+)/(?P<kind>successfulResults|failedResults|"
                               rf"unprocessedrecords|unprocessedRecords)/?"), self.job_results),
        ]

    # ------------------------------------------------------------------------------------ vendor shape
    def problem(self, status, message, *, code="UNKNOWN_EXCEPTION", fields=None, **extra):
        item = {"message": message, "errorCode": code}
        if fields:
            item["fields"] = fields
        return json_response([item], status)

    def unauthorized(self):
        return self.problem(401, "Session expired or invalid", code="INVALID_SESSION_ID")

    def throttled(self):
        return self.problem(429, "Too many requests; try again later", code="REQUEST_LIMIT_EXCEEDED")

    # ------------------------------------------------------------------------------------ login and quota
    def exempt(self, req):
        return req.path == "/services/oauth2/token"

    def authorized(self, req):
        return self.exempt(req) or super().authorized(req)

    def rate_headers(self, remaining):
        with self.lock:
            self.api_used += 1
            return {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.daily_limit}"}

    def oauth_token(self, req: Request):
        form = req.form
        grant = form.get("grant_type")
        if grant == "refresh_token":
            client = self.clients.get(form.get("client_id"))
            if client is None:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if client.get("secret") and form.get("client_secret") != client["secret"]:
                return self._oauth_error("invalid_client", "invalid client credentials")
            if form.get("refresh_token") != client.get("refresh_token"):
                return self._oauth_error("invalid_grant", "expired access/refresh token")
            if client.get("rotate"):  # refresh token rotation: the old one stops working
                client["refresh_token"] = f"5Aep{secrets.token_urlsafe(24)}"
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            import jwt
            try:
                claims = jwt.decode(form.get("assertion", ""), self.jwt_public_key, algorithms=["RS256"],
                                    audience=self.url, options={"require": ["exp", "iss", "sub", "aud"]})
            except jwt.PyJWTError as exc:
                return self._oauth_error("invalid_grant", f"invalid assertion: {type(exc).__name__}")
            if claims["iss"] not in self.clients or claims["sub"] != self.jwt_username:
                return self._oauth_error("invalid_grant", "user hasn't approved this consumer")
        else:
            return self._oauth_error("unsupported_grant_type", "grant type not supported")
        token = f"00D000000000001!{secrets.token_urlsafe(24)}"
        with self.lock:
            self.sessions.add(token)
            self.logins.append(grant)
        body = {"access_token": token, "instance_url": self.url, "id": f"{self.url}/id/00D/005",
                "token_type": "Bearer", "issued_at": str(int(time.time() * 1000)), "signature": "c2lnbmF0dXJl"}
        client = self.clients.get(form.get("client_id")) or {}
        if grant == "refresh_token" and client.get("rotate"):
            body["refresh_token"] = client["refresh_token"]
        return json_response(body)

    def _oauth_error(self, code, message):
        return json_response({"error": code, "error_description": message}, 400)

    def server_error(self, status):
        return self.problem(status, "An unexpected error occurred. Please include this ErrorId if you contact "
                                    "support: 1234-5678", code="UNKNOWN_EXCEPTION")

    # ------------------------------------------------------------------------------------ seeding
    def new_id(self, sobject: str) -> str:
        return f"{PREFIX[sobject]}{next(self._n):012d}AAA"

    def add(self, sobject: str, fields: dict, *, modstamp=None, record_id: str | None = None) -> str:
        with self._data_lock:
            rid = record_id or self.new_id(sobject)
            stamp = pd.Timestamp(modstamp or "2026-11-01T00:00:00Z")
            rec = {"Id": rid, "SystemModstamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.000+0000"), **fields}
            self.objects[sobject][rid] = rec
            return rid

    # ------------------------------------------------------------------------------------ query
    def _records(self, sobject, fields, version):
        out = []
        for rec in self.objects[sobject].values():
            row = {"attributes": {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{rec['Id']}"}}
            for f in fields:
                row[f] = rec.get(f)
            out.append(row)
        return out

    def query(self, req: Request, version):
        q = req.args.get("q", "")
        m = SOQL.match(q)
        if not m:
            return self.problem(400, f"unexpected token: '{q[:40]}'", code="MALFORMED_QUERY")
        sobject = m["object"]
        if sobject not in SCHEMA:
            return self.problem(400, f"sObject type '{sobject}' is not supported.", code="INVALID_TYPE")
        fields = [f.strip() for f in m["fields"].split(",")]
        for f in fields:
            if f not in SCHEMA[sobject]:
                return self.problem(400, f"No such column '{f}' on entity '{sobject}'. If you are attempting to use a "
                                         f"custom field, be sure to append the '__c' after the custom field name.",
                                    code="INVALID_FIELD")
        with self._data_lock:
            rows = self._records(sobject, fields, version)
        if m["where"]:
            for part in re.split(r"\s+AND\s+", m["where"], flags=re.IGNORECASE):
                c = COND.match(part)
                if not c:
                    return self.problem(400, f"unexpected token in WHERE: {part[:40]}", code="MALFORMED_QUERY")
                if c["field"] not in SCHEMA[sobject]:
                    return self.problem(400, f"No such column '{c['field']}' on entity '{sobject}'.",
                                        code="INVALID_FIELD")
                rows = [r for r in rows if _compare(self.objects[sobject][r["attributes"]["url"].rsplit("/", 1)[1]]
                                                    .get(c["field"]), c["op"], c["value"])]
        if m["order"]:
            key = m["order"]
            rows.sort(key=lambda r: (str(self.objects[sobject][r["attributes"]["url"].rsplit("/", 1)[1]].get(key)
                                         or ""), r["attributes"]["url"]), reverse=(m["dir"] or "").upper() == "DESC")
        if m["limit"]:
            rows = rows[:int(m["limit"])]
        locator = f"01g{next(self._n):09d}"
        with self._data_lock:
            self.cursors[locator] = rows
        return self._page(locator, 0, version)

    def _page(self, locator, offset, version):
        rows = self.cursors[locator]
        page = rows[offset:offset + self.page_size]
        body = {"totalSize": len(rows), "done": offset + self.page_size >= len(rows), "records": page}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{offset + self.page_size}"
        return json_response(body)

    def query_more(self, req, version, locator, offset):
        if locator not in self.cursors:
            return self.problem(400, "invalid query locator", code="INVALID_QUERY_LOCATOR")
        return self._page(locator, int(offset), version)

    # ------------------------------------------------------------------------------------ collections
    def _validate(self, sobject, rec):
        for name, value in rec.items():
            if name in ("attributes", "id"):
                continue
            if name not in SCHEMA.get(sobject, set()):
                return {"statusCode": "INVALID_FIELD", "message": f"No such column '{name}' on sobject of type "
                                                                   f"{sobject}", "fields": [name]}
            if name in NUMBERS and value is not None and not isinstance(value, (int, float)):
                return {"statusCode": "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        "message": f"{name}: value not of required type: {value}", "fields": [name]}
        return None

    def _collection_body(self, req):
        try:
            body = parse_json(req)
        except ValueError as exc:
            return None, self.problem(400, f"Unexpected character: {exc}", code="JSON_PARSER_ERROR")
        records = body.get("records")
        if not isinstance(records, list):
            return None, self.problem(400, "records is required", code="INVALID_FIELD")
        if len(records) > 200:
            return None, self.problem(400, "record limit reached. cannot submit more than 200 records into this call",
                                      code="EXCEEDED_ID_LIMIT")
        return body, None

    def collection_update(self, req, version):
        body, error = self._collection_body(req)
        if error:
            return error
        results, staged = [], []
        with self._data_lock:
            for rec in body["records"]:
                sobject = (rec.get("attributes") or {}).get("type")
                rid = rec.get("id") or rec.get("Id")
                if sobject not in SCHEMA:
                    results.append(_fail(rid, "INVALID_TYPE", "sObject type is required in attributes"))
                    continue
                err = self._validate(sobject, {k: v for k, v in rec.items() if k != "Id"})
                if err:
                    results.append({"id": rid, "success": False, "errors": [err]})
                    continue
                if rid not in self.objects[sobject]:
                    results.append(_fail(rid, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
                    continue
                staged.append((sobject, rid, {k: v for k, v in rec.items() if k not in ("attributes", "id", "Id")}))
                results.append({"id": rid, "success": True, "errors": []})
            if body.get("allOrNone") and any(not r["success"] for r in results):
                return json_response([r if not r["success"] else _fail(r["id"], "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                                                       "Record rolled back because not all records "
                                                                       "were valid and the request was using "
                                                                       "AllOrNone header") for r in results])
            for sobject, rid, fields in staged:
                self.objects[sobject][rid].update(fields)
                self.writes.append((sobject, "update", rid, fields))
        return json_response(results)

    def collection_upsert(self, req, version, sobject, ext):
        if sobject not in SCHEMA:
            return self.problem(404, f"The requested resource does not exist: {sobject}", code="NOT_FOUND")
        if ext not in EXTERNAL_IDS.get(sobject, set()):
            return self.problem(400, f"Field name provided, {ext} is not an External ID or indexed field for "
                                     f"{sobject}", code="INVALID_FIELD")
        body, error = self._collection_body(req)
        if error:
            return error
        results = []
        with self._data_lock:
            for rec in body["records"]:
                key = rec.get(ext)
                err = self._validate(sobject, rec) or (None if key else {
                    "statusCode": "REQUIRED_FIELD_MISSING", "message": f"Required fields are missing: [{ext}]",
                    "fields": [ext]})
                if err:
                    results.append({"id": None, "success": False, "errors": [err]})
                    continue
                results.append(self._upsert_one(sobject, ext, rec))
        return json_response(results)

    def _upsert_one(self, sobject, ext, rec):
        key = rec.get(ext)
        fields = {k: v for k, v in rec.items() if k not in ("attributes", "Id", "id")}
        found = next((r for r in self.objects[sobject].values() if r.get(ext) == key), None)
        if found is None:
            rid = self.add(sobject, fields, modstamp=pd.Timestamp.now(tz="UTC"))
            created = True
        else:
            found.update(fields)
            rid, created = found["Id"], False
        self.writes.append((sobject, "upsert", key, fields))
        return {"id": rid, "success": True, "errors": [], "created": created}

    # ------------------------------------------------------------------------------------ bulk 2.0
    def create_job(self, req, version):
        body = parse_json(req)
        sobject, operation = body.get("object"), body.get("operation")
        if sobject not in SCHEMA or operation not in ("insert", "update", "upsert"):
            return self.problem(400, f"InvalidJob : object {sobject!r} / operation {operation!r}",
                                code="INVALIDJOB")
        if operation == "upsert" and body.get("externalIdFieldName") not in EXTERNAL_IDS.get(sobject, set()):
            return self.problem(400, "InvalidJob : externalIdFieldName is not an external id", code="INVALIDJOB")
        job = f"750{next(self._n):012d}AAA"
        with self._data_lock:
            self.jobs[job] = {"id": job, "object": sobject, "operation": operation, "state": "Open",
                              "externalIdFieldName": body.get("externalIdFieldName"), "contentType": "CSV",
                              "lineEnding": body.get("lineEnding", "LF"), "columnDelimiter": "COMMA",
                              "csv": "", "ok": [], "failed": [], "numberRecordsProcessed": 0,
                              "numberRecordsFailed": 0, "apiVersion": float(version)}
        return json_response(self._job_view(job))

    def _job_view(self, job):
        return {k: v for k, v in self.jobs[job].items() if k not in ("csv", "ok", "failed", "unprocessed")}

    def upload_job(self, req, version, job):
        if job not in self.jobs or self.jobs[job]["state"] != "Open":
            return self.problem(400, "job is not open", code="INVALIDJOBSTATE")
        self.jobs[job]["csv"] += req.get_data(as_text=True)
        return Response(status=201)

    def close_job(self, req, version, job):
        body = parse_json(req)
        with self._data_lock:
            j = self.jobs.get(job)
            if j is None:
                return self.problem(404, "job not found", code="NOT_FOUND")
            if body.get("state") == "Aborted":
                j["state"] = "Aborted"
            elif body.get("state") == "UploadComplete":
                self._process(j)
            return json_response(self._job_view(job))

    def _process(self, j):
        rows = list(csv.DictReader(io.StringIO(j["csv"])))
        sobject, ext = j["object"], j["externalIdFieldName"]
        if self.bulk_stop_after is not None and len(rows) > self.bulk_stop_after:
            j["unprocessed"] = rows[self.bulk_stop_after:]
            rows = rows[:self.bulk_stop_after]
        for row in rows:
            # An empty cell leaves the field as it is; #N/A sets it to null.
            rec = {k: (None if v == "#N/A" else v) for k, v in row.items() if v != ""}
            for k in NUMBERS & set(rec):
                try:
                    rec[k] = float(rec[k]) if rec[k] is not None else None
                except ValueError:
                    pass
            err = self._validate(sobject, {k: v for k, v in rec.items() if k != "Id"})
            if err:
                j["failed"].append({**row, "sf__Id": row.get("Id", ""), "sf__Error": f"{err['statusCode']}:"
                                                                                     f"{err['message']}:{err['fields']}"})
                continue
            if j["operation"] == "update":
                rid = rec.get("Id")
                if rid not in self.objects[sobject]:
                    j["failed"].append({**row, "sf__Id": rid or "", "sf__Error": "INVALID_CROSS_REFERENCE_KEY:"
                                                                                  "invalid cross reference id:--"})
                    continue
                fields = {k: v for k, v in rec.items() if k != "Id"}
                self.objects[sobject][rid].update(fields)
                self.writes.append((sobject, "update", rid, fields))
                j["ok"].append({"sf__Id": rid, "sf__Created": "false", **row})
            else:
                res = self._upsert_one(sobject, ext, rec)
                j["ok"].append({"sf__Id": res["id"], "sf__Created": str(res["created"]).lower(), **row})
        if j.get("unprocessed"):
            j.update(state="Failed", errorMessage="InternalServerError : the job was stopped",
                     numberRecordsProcessed=len(rows), numberRecordsFailed=len(j["failed"]))
            return
        j.update(state="JobComplete", numberRecordsProcessed=len(rows), numberRecordsFailed=len(j["failed"]))

    def get_job(self, req, version, job):
        if job not in self.jobs:
            return self.problem(404, "job not found", code="NOT_FOUND")
        return json_response(self._job_view(job))

    def job_results(self, req, version, job, kind):
        j = self.jobs.get(job)
        if j is None:
            return self.problem(404, "job not found", code="NOT_FOUND")
        rows = {"successfulResults": j["ok"], "failedResults": j["failed"]}.get(kind, j.get("unprocessed", []))
        buf = io.StringIO()
        if rows:
            names = list(dict.fromkeys(k for r in rows for k in r))
            names = [n for n in names if n.startswith("sf__")] + [n for n in names if not n.startswith("sf__")]
            w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        else:
            buf.write({"failedResults": '"sf__Id","sf__Error"\n', "successfulResults": '"sf__Id","sf__Created"\n'}
                      .get(kind, ""))
        return Response(buf.getvalue(), mimetype="text/csv")


def _fail(rid, code, message, fields=None):
    return {"id": rid, "success": False, "errors": [{"statusCode": code, "message": message, "fields": fields or []}]}


def _compare(value, op, literal) -> bool:
    if value is None:
        return op == "!=" and literal.lower() != "null"
    lit = literal.strip("'")
    if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:?\d\d)", lit):
        a, b = pd.Timestamp(value), pd.Timestamp(lit)
    elif lit.lower() in ("true", "false"):
        a, b = str(value).lower(), lit.lower()
    else:
        a, b = str(value), lit
    return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b, "=": a == b, "!=": a != b}[op]
