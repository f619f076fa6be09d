"""The auditors' view: a FastAPI app that the slowburn AirflowPlugin mounts inside the Airflow UI.

For every run it shows the ledger (counts per step and the landed = linked + quarantined check), the
quarantine, the sales queue as a call list (who, how to reach them, their local time, the owner by
name, the respond-by and why, in words), the nurture queue, the flags, the next action per lead and
per rep, the GX Data Docs and the weekly reviews. Every table pages and searches; every timestamp
says its zone (UTC); every HTML page has a JSON twin under /api/ with structured values.

Security:
- Every endpoint needs an authenticated Airflow user (Airflow's `requires_authenticated`: JWT from
  the Authorization header or the UI's `_token` cookie); FastAPI plugin apps are not protected by
  default.
- Pages that show lead data (queues, flags, actions, quarantine, Data Docs, reviews) also need the
  custom-view permission LEAD_DATA_RESOURCE from Airflow's auth manager
  (`is_authorized_custom_view`): with the FAB auth manager, grant "can_read" on "Slowburn Lead Data"
  to a role. Airflow's simple auth manager grants every custom view to every role, so with it
  slowburn asks for a minimum role instead: `[slowburn] lead_data_min_role` (default `op`).
- Every value is escaped (Jinja autoescape); every response carries a Content-Security-Policy that
  runs no script; the Data Docs are served sandboxed (`sandbox` CSP: an opaque origin without
  scripts, so a lead's value cannot reach the session or the REST API) with vendored assets.

`create_app(warehouse_url=..., home=...)` builds the app; without a URL the warehouse comes from the
`slowburn_warehouse` Connection on first use. pandas is imported inside the handlers only.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from urllib.parse import unquote, urlencode, urlparse

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

URL_PREFIX = "/slowburn"
LEAD_DATA_RESOURCE = "Slowburn Lead Data"
PAGE_SIZE = 50
VENDOR_PATH = "/static/vendor"

# Our pages: inline styles and data: images (the plots), nothing else; no script at all.
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'self'")
# Data Docs hold raw lead values: sandboxed (opaque origin, no scripts, no forms), own assets only.
DATA_DOCS_CSP = ("sandbox; default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                 "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'")

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>slowburn: {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222} table{border-collapse:collapse;margin:.4em 0 .6em}
th,td{border:1px solid #ccc;padding:.2em .45em;font-size:13px;text-align:left;vertical-align:top;max-width:32em}
th{background:#f3f3f3} .ok{color:#17692f;font-weight:bold} .bad{color:#b00020;font-weight:bold}
nav a{margin-right:1em} form{margin:.4em 0} .pager{font-size:13px;margin:0 0 1.4em} .pager a{margin:0 .5em}
.muted{color:#666;font-size:12px}
</style></head><body>
<nav><a href="{{ base }}/">runs</a>{% if run_id %}<a href="{{ base }}/runs/{{ run_id }}">ledger</a>
<a href="{{ base }}/runs/{{ run_id }}/queues">sales queue</a><a href="{{ base }}/runs/{{ run_id }}/queues?queue=nurture">nurture queue</a>
<a href="{{ base }}/runs/{{ run_id }}/actions">next actions</a><a href="{{ base }}/runs/{{ run_id }}/flags">flags</a>
<a href="{{ base }}/runs/{{ run_id }}/quarantine">quarantine</a>{% endif %}<a href="{{ base }}/data-docs/">data docs</a>
<a href="{{ base }}/reviews">weekly reviews</a><a href="{{ json_url }}">JSON</a></nav>
<h1>{{ title }}</h1>
{% if note %}<p>{{ note }}</p>{% endif %}
<p class="muted">Times are UTC unless a column says otherwise.</p>
{% if check is not none %}<p class="{{ 'ok' if check.balanced else 'bad' }}" id="check">landed {{ check.landed_leads }}
 = linked {{ check.linked_leads }} + quarantined {{ check.quarantined_leads }}:
 {{ 'balanced' if check.balanced else 'NOT balanced' }}</p>{% endif %}
{% for section in sections %}<h2 id="{{ section.id }}">{{ section.heading }} ({{ section.total }})</h2>
{% if section.search is not none %}<form method="get">{% for name, value in section.hidden.items() %}
<input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor %}{% for name, value in section.search.items() %}
<label>{{ name }} <input name="{{ name }}" value="{{ value or '' }}"></label>{% endfor %}
<button type="submit">search</button></form>{% endif %}
<table><tr>{% for c in section.columns %}<th>{{ c.replace('_', ' ') }}</th>{% endfor %}</tr>
{% for row in section.rows %}<tr>{% for c in section.columns %}<td>
{%- if c in section.links and row[c] is not none %}<a href="{{ section.links[c].format(value=row[c]) }}">{{ row[c] }}</a>
{%- else %}{{ '' if row[c] is none else row[c] }}{% endif %}</td>{% endfor %}</tr>{% endfor %}
</table>{% if section.pager %}<div class="pager">rows {{ section.pager.first }}-{{ section.pager.last }} of {{ section.total }}
{% if section.pager.prev %}<a href="{{ section.pager.prev }}">previous</a>{% endif %}
{% if section.pager.next %}<a href="{{ section.pager.next }}">next</a>{% endif %}</div>{% endif %}
{% endfor %}
</body></html>"""

TIME_COLUMNS = ("logical_date", "started_at", "finished_at", "respond_by", "queued_at", "ripened_at", "opened_at",
                "closed_at", "next_touch_at", "sla_missed_at", "last_touch_at", "created_at", "scored_at")


def _clean(v):
    import pandas as pd

    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v.item() if hasattr(v, "item") else v


def _iso(v) -> str | None:
    """A stored timestamp (text on SQLite, datetime on PostgreSQL) as ISO 8601 with its UTC offset."""
    import pandas as pd

    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        ts = pd.Timestamp(v)
    except (ValueError, TypeError):
        return str(v)
    if ts is pd.NaT:
        return None
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).isoformat()


def _records(frame) -> list[dict]:
    """JSON-safe rows: timestamps as ISO text with offset, NaN/NA as None."""
    rows = [{k: _clean(v) for k, v in row.items()} for row in frame.astype(object).to_dict("records")]
    for row in rows:
        for k in row:
            if k in TIME_COLUMNS and row[k] is not None:
                row[k] = _iso(row[k])
    return rows


def _shown(rows: list[dict]) -> list[dict]:
    """Rows for a page: timestamps as "2026-11-23 10:00 UTC", lists and objects as readable text."""
    import pandas as pd

    out = []
    for row in rows:
        shown = {}
        for k, v in row.items():
            if k in TIME_COLUMNS and v is not None:
                ts = pd.Timestamp(v)
                v = ts.tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC") if ts.tzinfo else ts.strftime(
                    "%Y-%m-%d %H:%M UTC")
            elif isinstance(v, (list, dict)):
                v = json.dumps(v, default=str)
            shown[k] = v
        out.append(shown)
    return out


def _like(q: str | None, columns: list[str], params: dict) -> str | None:
    if not q:
        return None
    params["q"] = f"%{q.lower()}%"
    return "(" + " OR ".join(f"LOWER(COALESCE(CAST({c} AS TEXT), '')) LIKE :q" for c in columns) + ")"


def lead_data_allowed(user) -> bool:
    """Whether this Airflow user may see lead data (see the module docstring)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    manager = get_auth_manager()
    if type(manager).is_authorized_custom_view is SimpleAuthManager.is_authorized_custom_view:
        from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManagerRole
        from airflow.configuration import conf

        name = conf.get("slowburn", "lead_data_min_role", fallback="op").strip().upper()
        if name not in SimpleAuthManagerRole.__members__:
            raise HTTPException(status_code=500, detail=f"[slowburn] lead_data_min_role {name.lower()!r} is not one "
                                f"of {', '.join(m.lower() for m in SimpleAuthManagerRole.__members__)}")
        return SimpleAuthManager._is_authorized(method="GET", allow_role=SimpleAuthManagerRole[name], user=user)
    return manager.is_authorized_custom_view(method="GET", resource_name=LEAD_DATA_RESOURCE, user=user)


def requires_lead_data_access():
    from airflow.api_fastapi.core_api.security import get_user

    def inner(user=Depends(get_user)) -> None:
        if not lead_data_allowed(user):
            raise HTTPException(status_code=403, detail=f"this page shows lead data: it needs the "
                                f"{LEAD_DATA_RESOURCE!r} permission")
    return inner


def create_app(warehouse_url: str | None = None, home: str | Path | None = None,
               warehouse_conn_id: str = "slowburn_warehouse") -> FastAPI:
    """The auditors' app. `warehouse_url`/`home` are for tests and local use; by default they come
    from the `slowburn_warehouse` Connection and $SLOWBURN_HOME."""
    import jinja2
    from airflow.api_fastapi.core_api.security import requires_authenticated

    app = FastAPI(title="slowburn auditors' view", dependencies=[Depends(requires_authenticated())],
                  docs_url=None, redoc_url=None, openapi_url=None)
    template = jinja2.Environment(autoescape=True).from_string(_PAGE)
    state: dict = {}
    home_dir = Path(home or os.environ.get("SLOWBURN_HOME", ".slowburn"))
    lead_data = [Depends(requires_lead_data_access())]

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        docs = request.url.path.rstrip("/").split("/")
        response.headers["Content-Security-Policy"] = DATA_DOCS_CSP if "data-docs" in docs else PAGE_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if VENDOR_PATH in request.url.path:
            # The sandboxed docs have an opaque origin: their fonts are cross-origin requests.
            response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    # The vendored Bootstrap/Font Awesome files are public libraries from our package, not lead data:
    # the sandboxed docs load them without the session cookie (an opaque origin sends none). A mount
    # is not a route, so the app's authentication dependency does not apply to it.
    from starlette.staticfiles import StaticFiles

    from slowburn.validate import DATA_DOCS_ASSETS
    app.mount(f"/data-docs{VENDOR_PATH}", StaticFiles(directory=DATA_DOCS_ASSETS), name="data-docs-vendor")

    def warehouse():
        if "wh" not in state:
            from slowburn.warehouse import Warehouse

            url = warehouse_url
            if url is None:
                from slowburn.airflow.hooks import SlowburnWarehouseHook
                url = SlowburnWarehouseHook(warehouse_conn_id).sqlalchemy_url()
            wh = Warehouse(url)
            wh.ensure_schema()
            state["wh"] = wh
        return state["wh"]

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def pager(request: Request, total: int, limit: int, offset: int, param: str = "offset") -> dict | None:
        if total <= limit and offset == 0:
            return None
        params = dict(request.query_params)

        def at(o):
            return "?" + urlencode({**params, param: o, "limit": limit})
        return {"first": min(offset + 1, total), "last": min(offset + limit, total),
                "prev": at(max(offset - limit, 0)) if offset > 0 else None,
                "next": at(offset + limit) if offset + limit < total else None}

    def section(request: Request, heading: str, rows: list[dict], total: int | None = None, limit: int = PAGE_SIZE,
                offset: int = 0, search: dict | None = None, links: dict | None = None, hidden: dict | None = None,
                id: str | None = None, offset_param: str = "offset") -> dict:
        total = len(rows) if total is None else total
        columns = list(rows[0]) if rows else []
        return {"heading": heading, "rows": _shown(rows), "columns": columns, "total": total,
                "links": links or {}, "search": search, "hidden": hidden or {},
                "pager": pager(request, total, limit, offset, offset_param), "id": id or heading.replace(" ", "-")}

    def page(request: Request, title: str, json_url: str, sections=(), run_id=None, note=None,
             check=None) -> HTMLResponse:
        query = request.url.query
        return HTMLResponse(template.render(title=title, base=base(request),
                                            json_url=base(request) + json_url + (f"?{query}" if query else ""),
                                            sections=sections, run_id=run_id, note=note, check=check))

    def count(sql: str, **params) -> int:
        return int(warehouse().read(f"SELECT COUNT(*) AS n FROM ({sql}) counted", **params)["n"].iloc[0])

    def latest_run() -> str | None:
        return warehouse().read("SELECT MAX(run_id) AS r FROM run_ledger")["r"].iloc[0]

    def run_moment(run_id: str):
        import pandas as pd
        try:
            return pd.Timestamp(pd.to_datetime(run_id, format="%Y-%m-%dT%H%M%S")).tz_localize("UTC")
        except ValueError:
            raise HTTPException(status_code=404, detail=f"run {run_id} not found")

    def state_note(run_id: str) -> str | None:
        latest = latest_run()
        return None if run_id == latest else (
            f"queues are state tables: they hold the latest run's queues only (run {latest})")

    def owners_of(run_id: str):
        """The owners table as the run saw it (the latest owners load at or before the run)."""
        return warehouse().read_typed(
            "SELECT owner_id, name, email, active, deactivated_at, team FROM owners WHERE run_id = "
            "(SELECT MAX(run_id) FROM owners WHERE run_id <= :r)", datetime_columns=("deactivated_at",),
            bool_columns=("active",), r=run_id)

    # ------------------------------------------------------------------ data
    def runs_data(q, limit, offset) -> dict:
        params: dict = {}
        cond = _like(q, ["run_id", "status"], params)
        sql = ("SELECT run_id, logical_date, status, landed_leads, linked_leads, quarantined_leads, golden_leads, "
               "sales_queue, nurture_queue, lead_flags, invariant_ok FROM run_ledger"
               + (f" WHERE {cond}" if cond else ""))
        total = count(sql, **params)
        rows = _records(warehouse().read(f"{sql} ORDER BY run_id DESC LIMIT {int(limit)} OFFSET {int(offset)}",
                                         **params))
        for r in rows:
            r["invariant_ok"] = bool(r["invariant_ok"])
            r["balanced"] = r["landed_leads"] == r["linked_leads"] + r["quarantined_leads"]
        return {"total": total, "limit": limit, "offset": offset, "runs": rows}

    def ledger_data(run_id: str) -> dict:
        frame = warehouse().read_table("run_ledger", run_id)
        if frame.empty:
            raise HTTPException(status_code=404, detail=f"run {run_id} not found")
        row = _records(frame)[0]
        steps = json.loads(row.pop("step_counts") or "{}")
        row["invariant_ok"] = bool(row["invariant_ok"])
        check = {"landed_leads": row["landed_leads"], "linked_leads": row["linked_leads"],
                 "quarantined_leads": row["quarantined_leads"],
                 "balanced": row["landed_leads"] == row["linked_leads"] + row["quarantined_leads"],
                 "invariant_ok": row["invariant_ok"]}
        per_step = []
        for step, counts in steps.items():
            flat = {k: v for k, v in counts.items() if not isinstance(v, (dict, list))}
            per_step.append({"step": step, "seconds": flat.pop("seconds", None),
                             "counts": ", ".join(f"{k}={v}" for k, v in flat.items())})
        return {"run_id": run_id, "ledger": row, "check": check, "steps": steps, "step_table": per_step}

    def quarantine_data(run_id, q, rule, entity, limit, offset) -> dict:
        where, params = ["run_id = :run_id"], {"run_id": run_id}
        for name, value in (("rule", rule), ("entity", entity)):
            if value:
                where.append(f"{name} = :{name}")
                params[name] = value
        like = _like(q, ["reason", "value", "row_key", "source_id", "rule", "column_name"], params)
        if like:
            where.append(like)
        sql = (f"SELECT entity, row_key, source_system, source_id, rule, column_name, value, reason "
               f"FROM quarantine WHERE {' AND '.join(where)}")
        wh = warehouse()
        total = count(sql, **params)
        rows = wh.read(f"{sql} ORDER BY entity, rule, row_key LIMIT {int(limit)} OFFSET {int(offset)}", **params)
        by_rule = wh.read("SELECT rule, COUNT(*) AS n FROM quarantine WHERE run_id = :run_id GROUP BY rule "
                          "ORDER BY n DESC", run_id=run_id)
        return {"run_id": run_id, "total": total, "limit": limit, "offset": offset,
                "by_rule": _records(by_rule), "rows": _records(rows)}

    def sales_queue_data(run_id, q, owner_id, limit, offset) -> dict:
        import pandas as pd

        from slowburn.report.words import (lead_timezone, local_time, owner_labels, reason_items,
                                           reasons_in_words, touch_story)
        params: dict = {}
        where = []
        if owner_id:
            where.append("s.owner_id = :owner_id")
            params["owner_id"] = owner_id
        like = _like(q, ["s.golden_id", "g.first_name", "g.last_name", "g.company", "g.email", "g.title",
                         "s.owner_id", "g.phone_e164"], params)
        if like:
            where.append(like)
        sql = ("SELECT s.golden_id, g.first_name, g.last_name, g.company, g.title, g.phone_e164, g.email, "
               "g.country_code, g.state, g.do_not_call, s.owner_id, s.score, s.tier, s.respond_by, s.queued_at, "
               "s.ripened_at, s.reasons, s.pass_back_reason, s.over_capacity FROM sales_queue s "
               "LEFT JOIN golden_leads g ON g.golden_id = s.golden_id" + (f" WHERE {' AND '.join(where)}" if where
                                                                           else ""))
        wh = warehouse()
        total = count(sql, **params)
        frame = wh.read(f"{sql} ORDER BY s.respond_by, s.score DESC, s.golden_id LIMIT {int(limit)} "
                        f"OFFSET {int(offset)}", **params)
        now = run_moment(run_id)
        ids = frame["golden_id"].astype(str).tolist()
        touches = pd.DataFrame(columns=["golden_id", "touch_type", "occurred_at"])
        if ids:
            marks = ", ".join(f":g{i}" for i in range(len(ids)))
            touches = wh.read_typed(f"SELECT DISTINCT golden_id, touch_type, occurred_at FROM touches WHERE golden_id "
                                    f"IN ({marks}) AND run_id <= :r", datetime_columns=("occurred_at",),
                                    r=run_id, **{f"g{i}": g for i, g in enumerate(ids)})
        story = touch_story(touches, now)
        owners = owners_of(run_id)
        labels = owner_labels(frame["owner_id"], owners).tolist() if len(frame) else []
        rows = []
        wall = pd.Timestamp.now(tz="UTC")  # a rep calls now: their lead's clock now, not at the run
        for rec, label in zip(_records(frame), labels):
            zone, how = lead_timezone(rec["phone_e164"], rec["country_code"], rec["state"])
            name = " ".join(p for p in (rec["first_name"], rec["last_name"]) if p) or None
            why = story.get(rec["golden_id"], "no touches in 90 days")
            if rec["pass_back_reason"]:
                why = rec["pass_back_reason"] + "; " + why
            rows.append({
                "name": name, "company": rec["company"], "title": rec["title"],
                "phone": None if rec["do_not_call"] in (1, True) else rec["phone_e164"],
                "do_not_call": bool(rec["do_not_call"]) if rec["do_not_call"] is not None else None,
                "email": rec["email"], "local_time": local_time(zone, wall), "time_zone": zone,
                "time_zone_from": how, "owner": label, "owner_id": rec["owner_id"], "respond_by": rec["respond_by"],
                "score": rec["score"], "why": why, "score_reasons": reasons_in_words(rec["reasons"]),
                "reasons": reason_items(rec["reasons"]), "golden_id": rec["golden_id"],
                "over_capacity": bool(rec["over_capacity"]) if rec["over_capacity"] is not None else None})
        return {"run_id": run_id, "as_of": now.isoformat(), "total": total, "limit": limit, "offset": offset,
                "note": state_note(run_id), "rows": rows}

    def nurture_queue_data(run_id, q, limit, offset) -> dict:
        params: dict = {}
        like = _like(q, ["n.golden_id", "n.segment", "g.first_name", "g.last_name", "g.company", "g.email"], params)
        sql = ("SELECT n.golden_id, g.first_name, g.last_name, g.company, g.email, n.segment, n.channel, "
               "n.buying_stage, n.interest, n.cadence_days, n.next_touch_at, n.touches_so_far, s.score, s.tier, "
               "n.sla_missed, n.sla_missed_at, n.missed_owner_id FROM nurture_queue n LEFT JOIN golden_leads g "
               "ON g.golden_id = n.golden_id LEFT JOIN lead_scores s ON s.golden_id = n.golden_id"
               + (f" WHERE {like}" if like else ""))
        total = count(sql, **params)
        rows = _records(warehouse().read(f"{sql} ORDER BY n.next_touch_at, n.golden_id LIMIT {int(limit)} "
                                         f"OFFSET {int(offset)}", **params))
        for r in rows:
            r["sla_missed"] = bool(r["sla_missed"]) if r["sla_missed"] is not None else None
        return {"run_id": run_id, "total": total, "limit": limit, "offset": offset, "note": state_note(run_id),
                "rows": rows}

    def flags_data(run_id, q, flag, status, owner_id, severity, limit, offset) -> dict:
        from slowburn.report.words import evidence_in_words, owner_labels
        from slowburn.warehouse import FLAGS_SEEN_BY_RUN
        where, params = [FLAGS_SEEN_BY_RUN], {"run_id": run_id}
        for name, value in (("flag", flag), ("status", status), ("owner_id", owner_id), ("severity", severity)):
            if value:
                where.append(f"COALESCE({name}, '') = :{name}")
                params[name] = value
        like = _like(q, ["golden_id", "flag", "reason", "owner_id", "suggested_action"], params)
        if like:
            where.append(like)
        cond = " AND ".join(where)
        wh = warehouse()
        counts = wh.read("SELECT flag, severity, COALESCE(status, 'open') AS status, COUNT(*) AS n FROM lead_flags "
                         f"WHERE {FLAGS_SEEN_BY_RUN} GROUP BY flag, severity, COALESCE(status, 'open') ORDER BY flag, "
                         "severity", run_id=run_id)
        sql = (f"SELECT golden_id, flag, severity, owner_id, status, opened_at, closed_at, reason, suggested_action, "
               f"evidence FROM lead_flags WHERE {cond}")
        total = count(sql, **params)
        frame = wh.read(f"{sql} ORDER BY CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, flag, "
                        f"golden_id LIMIT {int(limit)} OFFSET {int(offset)}", **params)
        labels = owner_labels(frame["owner_id"], owners_of(run_id)).tolist() if len(frame) else []
        rows = []
        for rec, label in zip(_records(frame), labels):
            evidence = rec.pop("evidence")
            try:
                rec["evidence"] = json.loads(evidence) if evidence else None
            except ValueError:
                rec["evidence"] = evidence
            rec["evidence_text"] = evidence_in_words(rec["evidence"])
            rec["owner"] = label
            rows.append(rec)
        return {"run_id": run_id, "total": total, "limit": limit, "offset": offset, "counts": _records(counts),
                "rows": rows}

    def actions_frame(run_id: str):
        """Next actions of a run (slowburn.flags.next_actions), cached while the run's load stands."""
        from slowburn.flags import next_actions
        from slowburn.report.words import owner_labels

        wh = warehouse()
        stamp = wh.read("SELECT finished_at FROM run_ledger WHERE run_id = :r", r=run_id)
        if stamp.empty:
            raise HTTPException(status_code=404, detail=f"run {run_id} not found")
        key = (run_id, str(stamp["finished_at"].iloc[0]))
        if state.get("actions_key") != key:
            flags = wh.flags_at(run_id, "golden_id, flag, severity, owner_id, status, reason, suggested_action")
            scores = wh.scores_at(run_id)[["golden_id", "score"]]
            queue = (wh.read_typed("SELECT golden_id, owner_id, score, respond_by FROM sales_queue",
                                   datetime_columns=("respond_by",)) if run_id == latest_run() else None)
            actions = next_actions(flags, scores, queue)
            actions["owner"] = owner_labels(actions["owner_id"], owners_of(run_id)).to_numpy()
            state["actions"], state["actions_key"] = actions, key
        return state["actions"]

    def actions_data(run_id, q, owner_id, kind, limit, offset, per_rep: int, rep_offset: int = 0) -> dict:
        from slowburn.flags import action_counts

        actions = actions_frame(run_id)
        counts = action_counts(actions)
        labels = actions.drop_duplicates("owner_id").set_index(actions.drop_duplicates("owner_id")["owner_id"]
                                                                .astype("string").fillna(""))["owner"]
        counts.insert(0, "owner", counts["owner_id"].map(labels))
        counts = counts.sort_values("actions", ascending=False, kind="stable")
        if q:
            counts = counts[counts["owner"].astype(str).str.lower().str.contains(q.lower(), regex=False).to_numpy()
                            | counts["owner_id"].astype(str).str.lower().str.contains(q.lower(), regex=False).to_numpy()]
        if owner_id:
            counts = counts[counts["owner_id"] == owner_id]
        shown = actions
        if owner_id:
            shown = shown[shown["owner_id"].astype("string").fillna("") == owner_id]
        if kind:
            shown = shown[shown["kind"] == kind]
        if q:
            text = (shown["golden_id"].astype(str) + " " + shown["reason"].astype(str) + " " + shown["owner"].astype(str)
                    + " " + shown["action"].astype(str)).str.lower()
            shown = shown[text.str.contains(q.lower(), regex=False).to_numpy()]
        if per_rep:
            shown = shown[shown["rank"] <= per_rep]
        shown = shown.sort_values(["rank", "owner_id"], kind="stable")
        cols = ["rank", "owner", "kind", "action", "golden_id", "flag", "severity", "score", "reason", "other_flags",
                "respond_by", "owner_id"]
        return {"run_id": run_id, "total": int(len(shown)), "limit": limit, "offset": offset,
                "reps": int(len(counts)), "rep_offset": rep_offset,
                "per_rep": _records(counts.iloc[rep_offset:rep_offset + limit]),
                "rows": _records(shown[cols].iloc[offset:offset + limit])}

    def data_docs_dir() -> Path | None:
        wh = warehouse()
        frame = wh.read("SELECT step_counts FROM run_ledger ORDER BY run_id DESC LIMIT 1")
        candidates = []
        if len(frame):
            url = json.loads(frame["step_counts"].iloc[0] or "{}").get("validate", {}).get("data_docs")
            if url:
                candidates.append(Path(unquote(urlparse(url).path)).parent)
        candidates.append(home_dir / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site")
        return next((c for c in candidates if (c / "index.html").is_file()), None)

    def reviews_dir() -> Path:
        return home_dir / "reviews"

    # ------------------------------------------------------------------ JSON
    @app.get("/api/runs")
    def api_runs(q: str | None = None, limit: int = Query(PAGE_SIZE, ge=1, le=5000), offset: int = Query(0, ge=0)):
        return runs_data(q, limit, offset)

    @app.get("/api/runs/{run_id}")
    def api_ledger(run_id: str):
        data = ledger_data(run_id)
        data.pop("step_table")
        return data

    @app.get("/api/runs/{run_id}/quarantine", dependencies=lead_data)
    def api_quarantine(run_id: str, q: str | None = None, rule: str | None = None, entity: str | None = None,
                       limit: int = Query(PAGE_SIZE, ge=1, le=5000), offset: int = Query(0, ge=0)):
        return quarantine_data(run_id, q, rule, entity, limit, offset)

    @app.get("/api/runs/{run_id}/queues", dependencies=lead_data)
    def api_queues(run_id: str, queue: str = Query("sales", pattern="^(sales|nurture)$"), q: str | None = None,
                   owner_id: str | None = None, limit: int = Query(PAGE_SIZE, ge=1, le=5000),
                   offset: int = Query(0, ge=0)):
        run_moment(run_id)
        if queue == "nurture":
            return {"queue": "nurture", **nurture_queue_data(run_id, q, limit, offset)}
        return {"queue": "sales", **sales_queue_data(run_id, q, owner_id, limit, offset)}

    @app.get("/api/runs/{run_id}/flags", dependencies=lead_data)
    def api_flags(run_id: str, q: str | None = None, flag: str | None = None, status: str | None = None,
                  owner_id: str | None = None, severity: str | None = None,
                  limit: int = Query(PAGE_SIZE, ge=1, le=5000), offset: int = Query(0, ge=0)):
        return flags_data(run_id, q, flag, status, owner_id, severity, limit, offset)

    @app.get("/api/runs/{run_id}/actions", dependencies=lead_data)
    def api_actions(run_id: str, q: str | None = None, owner_id: str | None = None, kind: str | None = None,
                    per_rep: int = Query(0, ge=0), limit: int = Query(PAGE_SIZE, ge=1, le=5000),
                    offset: int = Query(0, ge=0), rep_offset: int = Query(0, ge=0)):
        return actions_data(run_id, q, owner_id, kind, limit, offset, per_rep, rep_offset)

    @app.get("/api/data-docs", dependencies=lead_data)
    def api_data_docs(request: Request):
        folder = data_docs_dir()
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.html")) if folder else []
        return {"available": folder is not None, "index": f"{base(request)}/data-docs/index.html" if folder else None,
                "pages": files}

    @app.get("/api/reviews", dependencies=lead_data)
    def api_reviews(request: Request):
        folder = reviews_dir()
        weeks = sorted((p.name for p in folder.iterdir() if (p / "review.json").is_file()), reverse=True) \
            if folder.is_dir() else []
        out = []
        for w in weeks:
            meta = json.loads((folder / w / "review.json").read_text(encoding="utf-8"))
            out.append({"week": w, "covers": meta.get("covers"), "generated_at": meta.get("generated_at"),
                        "earlier_versions": len(meta.get("earlier_versions", [])),
                        "html": f"{base(request)}/reviews/{w}/review.html",
                        "json": f"{base(request)}/reviews/{w}/review.json"})
        return {"reviews": out}

    # ------------------------------------------------------------------ HTML
    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request, q: str | None = None, limit: int = Query(PAGE_SIZE, ge=1, le=5000),
                  offset: int = Query(0, ge=0)):
        data = runs_data(q, limit, offset)
        return page(request, "Runs", "/api/runs", [section(
            request, "runs", data["runs"], data["total"], limit, offset, search={"q": q},
            links={"run_id": base(request) + "/runs/{value}"})])

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def ledger_page(request: Request, run_id: str):
        data = ledger_data(run_id)
        ledger = [{"field": k, "value": _shown([{k: v}])[0][k]} for k, v in data["ledger"].items()]
        return page(request, f"Ledger of run {run_id}", f"/api/runs/{run_id}",
                    [section(request, "counts per step", data["step_table"]), section(request, "ledger", ledger)],
                    run_id=run_id, check=data["check"])

    @app.get("/runs/{run_id}/quarantine", response_class=HTMLResponse, dependencies=lead_data)
    def quarantine_page(request: Request, run_id: str, q: str | None = None, rule: str | None = None,
                        entity: str | None = None, limit: int = Query(PAGE_SIZE, ge=1, le=5000),
                        offset: int = Query(0, ge=0)):
        data = quarantine_data(run_id, q, rule, entity, limit, offset)
        return page(request, f"Quarantine of run {run_id}", f"/api/runs/{run_id}/quarantine",
                    [section(request, "rows by rule", data["by_rule"],
                             links={"rule": f"{base(request)}/runs/{run_id}/quarantine?rule={{value}}"}),
                     section(request, "quarantined rows", data["rows"], data["total"], limit, offset,
                             search={"q": q, "rule": rule, "entity": entity})],
                    run_id=run_id)

    @app.get("/runs/{run_id}/queues", response_class=HTMLResponse, dependencies=lead_data)
    def queues_page(request: Request, run_id: str, queue: str = Query("sales", pattern="^(sales|nurture)$"),
                    q: str | None = None, owner_id: str | None = None, limit: int = Query(PAGE_SIZE, ge=1, le=5000),
                    offset: int = Query(0, ge=0)):
        run_moment(run_id)
        if queue == "nurture":
            data = nurture_queue_data(run_id, q, limit, offset)
            return page(request, f"Nurture queue of run {run_id}", f"/api/runs/{run_id}/queues",
                        [section(request, "nurture queue", data["rows"], data["total"], limit, offset,
                                 search={"q": q}, hidden={"queue": "nurture"})], run_id=run_id, note=data["note"])
        data = sales_queue_data(run_id, q, owner_id, limit, offset)
        rows = [{"name": r["name"], "company": r["company"], "title": r["title"],
                 "phone": "do not call" if r["do_not_call"] else r["phone"], "email": r["email"],
                 "local_time": (f"{r['local_time']} {r['time_zone']}"
                                + (" (approx.)" if "approx" in r["time_zone_from"] else "")) if r["local_time"]
                 else "unknown", "owner": r["owner"], "respond_by": r["respond_by"], "score": r["score"],
                 "why": r["why"], "score_reasons": r["score_reasons"], "golden_id": r["golden_id"]}
                for r in data["rows"]]
        note = " ".join(filter(None, [data["note"], "Local time is the lead's clock now; 'why' is what they did up to "
                                                    f"the run ({data['as_of']}); call before respond-by."]))
        return page(request, f"Sales queue of run {run_id}", f"/api/runs/{run_id}/queues",
                    [section(request, "sales queue", rows, data["total"], limit, offset,
                             search={"q": q, "owner_id": owner_id}, hidden={"queue": "sales"})],
                    run_id=run_id, note=note)

    @app.get("/runs/{run_id}/flags", response_class=HTMLResponse, dependencies=lead_data)
    def flags_page(request: Request, run_id: str, q: str | None = None, flag: str | None = None,
                   status: str | None = None, owner_id: str | None = None, severity: str | None = None,
                   limit: int = Query(PAGE_SIZE, ge=1, le=5000), offset: int = Query(0, ge=0)):
        data = flags_data(run_id, q, flag, status, owner_id, severity, limit, offset)
        rows = [{k: v for k, v in r.items() if k not in ("evidence", "owner_id")} for r in data["rows"]]
        return page(request, f"Flags of run {run_id}", f"/api/runs/{run_id}/flags",
                    [section(request, "flags by rule, severity and status", data["counts"],
                             links={"flag": f"{base(request)}/runs/{run_id}/flags?flag={{value}}"}),
                     section(request, "flags", rows, data["total"], limit, offset,
                             search={"q": q, "flag": flag, "severity": severity, "status": status,
                                     "owner_id": owner_id})],
                    run_id=run_id)

    @app.get("/runs/{run_id}/actions", response_class=HTMLResponse, dependencies=lead_data)
    def actions_page(request: Request, run_id: str, q: str | None = None, owner_id: str | None = None,
                     kind: str | None = None, per_rep: int = Query(5, ge=0), limit: int = Query(PAGE_SIZE, ge=1, le=5000),
                     offset: int = Query(0, ge=0), rep_offset: int = Query(0, ge=0)):
        data = actions_data(run_id, q, owner_id, kind, limit, offset, per_rep, rep_offset)
        link = f"{base(request)}/runs/{run_id}/actions?per_rep=0&owner_id={{value}}"
        return page(request, f"Next actions of run {run_id}", f"/api/runs/{run_id}/actions",
                    [section(request, "actions per rep", data["per_rep"], data["reps"], limit, rep_offset,
                             links={"owner_id": link}, offset_param="rep_offset"),
                     section(request, "next action per lead", data["rows"], data["total"], limit, offset,
                             search={"q": q, "owner_id": owner_id, "kind": kind, "per_rep": per_rep})],
                    run_id=run_id, note="One action per lead: its open flags ranked by severity, then by what the "
                    "flag is worth, then by score; hot leads in the sales queue are to be called. per_rep=0 lists "
                    "every action.")

    def _file_in(folder: Path | None, path: str) -> FileResponse:
        if folder is None:
            raise HTTPException(status_code=404, detail="not built yet")
        root = folder.resolve()
        target = (root / (path or "index.html")).resolve()
        if root not in target.parents and target != root or not target.is_file():
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(target)

    @app.get("/data-docs/{path:path}", dependencies=lead_data)
    def data_docs(path: str):
        return _file_in(data_docs_dir(), path)

    @app.get("/reviews", response_class=HTMLResponse, dependencies=lead_data)
    def reviews_page(request: Request, q: str | None = None, limit: int = Query(PAGE_SIZE, ge=1, le=5000),
                     offset: int = Query(0, ge=0)):
        rows = api_reviews(request)["reviews"]
        if q:
            rows = [r for r in rows if q.lower() in json.dumps(r).lower()]
        return page(request, "Weekly lead reviews", "/api/reviews",
                    [section(request, "reviews", rows[offset:offset + limit], len(rows), limit, offset,
                             search={"q": q}, links={"html": "{value}", "json": "{value}"})])

    @app.get("/reviews/{path:path}", dependencies=lead_data)
    def review_file(path: str):
        return _file_in(reviews_dir(), path)

    @app.exception_handler(ValueError)
    def _bad_value(_request: Request, exc: ValueError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    return app
