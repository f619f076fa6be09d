"""The auditors' view: a FastAPI app that the slowburn AirflowPlugin mounts inside the Airflow UI.

For every run it shows the ledger (counts per step and the landed = linked + quarantined check), the
quarantine (rule and reason, searchable), the GX Data Docs, the queues and the flags, plus the weekly
lead reviews. Every HTML page has a JSON twin under /api/. Every endpoint needs an authenticated
Airflow user: the app depends on Airflow's own `requires_authenticated` (JWT from the Authorization
header or the UI's `_token` cookie), because FastAPI plugin apps are not protected by default.

`create_app(warehouse_url=..., home=...)` builds the app; without a URL the warehouse comes from the
`slowburn_warehouse` Connection on first use. pandas is imported inside the handlers only.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

URL_PREFIX = "/slowburn"

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>slowburn: {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222} table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .5em;font-size:13px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .ok{color:#17692f;font-weight:bold} .bad{color:#b00020;font-weight:bold}
nav a{margin-right:1em} form{margin:.5em 0}
</style></head><body>
<nav><a href="{{ base }}/">runs</a>{% if run_id %}<a href="{{ base }}/runs/{{ run_id }}">ledger</a>
<a href="{{ base }}/runs/{{ run_id }}/quarantine">quarantine</a><a href="{{ base }}/runs/{{ run_id }}/queues">queues</a>
<a href="{{ base }}/runs/{{ run_id }}/flags">flags</a>{% endif %}<a href="{{ base }}/data-docs/">data docs</a>
<a href="{{ base }}/reviews">weekly reviews</a><a href="{{ json_url }}">JSON</a></nav>
<h1>{{ title }}</h1>
{% if note %}<p>{{ note }}</p>{% endif %}
{% if check is not none %}<p class="{{ 'ok' if check.balanced else 'bad' }}" id="check">landed {{ check.landed_leads }}
 = linked {{ check.linked_leads }} + quarantined {{ check.quarantined_leads }}:
 {{ 'balanced' if check.balanced else 'NOT balanced' }}</p>{% endif %}
{% if search is not none %}<form method="get">{% for name, value in search.items() %}
<label>{{ name }} <input name="{{ name }}" value="{{ value or '' }}"></label>{% endfor %}
<button type="submit">search</button></form>{% endif %}
{% for section in sections %}<h2>{{ section.heading }} ({{ section.total }})</h2>
<table><tr>{% for c in section.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in section.rows %}<tr>{% for c in section.columns %}<td>
{%- if c in section.links %}<a href="{{ section.links[c].format(value=row[c]) }}">{{ row[c] }}</a>
{%- else %}{{ '' if row[c] is none else row[c] }}{% endif %}</td>{% endfor %}</tr>{% endfor %}
</table>{% endfor %}
</body></html>"""


def _records(frame) -> list[dict]:
    """JSON-safe rows: timestamps as ISO text, NaN/NA as None."""
    import pandas as pd

    out = []
    for row in frame.astype(object).to_dict("records"):
        clean = {}
        for k, v in row.items():
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
                clean[k] = None
            elif isinstance(v, pd.Timestamp):
                clean[k] = v.isoformat()
            elif hasattr(v, "item"):
                clean[k] = v.item()
            else:
                clean[k] = v
        out.append(clean)
    return out


def _section(heading: str, rows: list[dict], total: int | None = None, links: dict | None = None) -> dict:
    columns = list(rows[0]) if rows else []
    return {"heading": heading, "rows": rows, "columns": columns, "total": len(rows) if total is None else total,
            "links": links or {}}


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

    def page(request: Request, title: str, json_url: str, sections=(), run_id=None, note=None, check=None,
             search=None) -> HTMLResponse:
        return HTMLResponse(template.render(title=title, base=base(request), json_url=base(request) + json_url,
                                            sections=sections, run_id=run_id, note=note, check=check,
                                            search=search))

    # ------------------------------------------------------------------ data
    def runs_data() -> list[dict]:
        frame = warehouse().read("SELECT run_id, logical_date, status, landed_leads, linked_leads, quarantined_leads, "
                                 "golden_leads, sales_queue, nurture_queue, lead_flags, invariant_ok "
                                 "FROM run_ledger ORDER BY run_id DESC")
        rows = _records(frame)
        for r in rows:
            r["invariant_ok"] = bool(r["invariant_ok"])
            r["balanced"] = r["landed_leads"] == r["linked_leads"] + r["quarantined_leads"]
        return rows

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

    def quarantine_data(run_id: str, q: str | None, rule: str | None, entity: str | None, limit: int,
                        offset: int) -> dict:
        where, params = ["run_id = :run_id"], {"run_id": run_id}
        if rule:
            where.append("rule = :rule")
            params["rule"] = rule
        if entity:
            where.append("entity = :entity")
            params["entity"] = entity
        if q:
            where.append("(LOWER(reason) LIKE :q OR LOWER(COALESCE(value, '')) LIKE :q OR LOWER(row_key) LIKE :q "
                         "OR LOWER(COALESCE(source_id, '')) LIKE :q OR LOWER(rule) LIKE :q)")
            params["q"] = f"%{q.lower()}%"
        cond = " AND ".join(where)
        wh = warehouse()
        total = int(wh.read(f"SELECT COUNT(*) AS n FROM quarantine WHERE {cond}", **params)["n"].iloc[0])
        rows = wh.read(f"SELECT entity, row_key, source_system, source_id, rule, column_name, value, reason "
                       f"FROM quarantine WHERE {cond} ORDER BY entity, rule, row_key LIMIT {int(limit)} "
                       f"OFFSET {int(offset)}", **params)
        by_rule = wh.read("SELECT rule, COUNT(*) AS n FROM quarantine WHERE run_id = :run_id GROUP BY rule "
                          "ORDER BY n DESC", run_id=run_id)
        return {"run_id": run_id, "total": total, "limit": limit, "offset": offset,
                "by_rule": _records(by_rule), "rows": _records(rows)}

    def queues_data(run_id: str, limit: int) -> dict:
        wh = warehouse()
        out = {"run_id": run_id}
        for name, order in (("sales_queue", "score DESC"), ("nurture_queue", "next_touch_at")):
            total = int(wh.read(f"SELECT COUNT(*) AS n FROM {name} WHERE run_id = :r", r=run_id)["n"].iloc[0])
            rows = wh.read(f"SELECT * FROM {name} WHERE run_id = :r ORDER BY {order} LIMIT {int(limit)}", r=run_id)
            out[name] = {"total": total, "rows": _records(rows.drop(columns=["run_id"]))}
        latest = wh.read("SELECT MAX(run_id) AS r FROM run_ledger")["r"].iloc[0]
        out["note"] = None if run_id == latest else (
            "queues are state tables: they hold the latest run's queues only (run %s)" % latest)
        return out

    def flags_data(run_id: str, flag: str | None, status: str | None, owner_id: str | None, limit: int) -> dict:
        where, params = ["run_id = :run_id"], {"run_id": run_id}
        for name, value in (("flag", flag), ("status", status), ("owner_id", owner_id)):
            if value:
                where.append(f"{name} = :{name}")
                params[name] = value
        cond = " AND ".join(where)
        wh = warehouse()
        counts = wh.read("SELECT flag, COALESCE(status, 'open') AS status, COUNT(*) AS n FROM lead_flags "
                         "WHERE run_id = :run_id GROUP BY flag, COALESCE(status, 'open') ORDER BY flag",
                         run_id=run_id)
        total = int(wh.read(f"SELECT COUNT(*) AS n FROM lead_flags WHERE {cond}", **params)["n"].iloc[0])
        rows = wh.read(f"SELECT golden_id, flag, severity, owner_id, status, opened_at, closed_at, reason, "
                       f"suggested_action, evidence FROM lead_flags WHERE {cond} ORDER BY flag, golden_id "
                       f"LIMIT {int(limit)}", **params)
        return {"run_id": run_id, "total": total, "counts": _records(counts), "rows": _records(rows)}

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
    def api_runs():
        return {"runs": runs_data()}

    @app.get("/api/runs/{run_id}")
    def api_ledger(run_id: str):
        data = ledger_data(run_id)
        data.pop("step_table")
        return data

    @app.get("/api/runs/{run_id}/quarantine")
    def api_quarantine(run_id: str, q: str | None = None, rule: str | None = None, entity: str | None = None,
                       limit: int = Query(200, ge=1, le=5000), offset: int = Query(0, ge=0)):
        return quarantine_data(run_id, q, rule, entity, limit, offset)

    @app.get("/api/runs/{run_id}/queues")
    def api_queues(run_id: str, limit: int = Query(500, ge=1, le=5000)):
        return queues_data(run_id, limit)

    @app.get("/api/runs/{run_id}/flags")
    def api_flags(run_id: str, flag: str | None = None, status: str | None = None, owner_id: str | None = None,
                  limit: int = Query(500, ge=1, le=5000)):
        return flags_data(run_id, flag, status, owner_id, limit)

    @app.get("/api/data-docs")
    def api_data_docs(request: Request):
        folder = data_docs_dir()
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.html")) if folder else []
        return {"available": folder is not None, "index": f"{base(request)}/data-docs/index.html" if folder else None,
                "pages": files}

    @app.get("/api/reviews")
    def api_reviews(request: Request):
        folder = reviews_dir()
        weeks = sorted((p.name for p in folder.iterdir() if (p / "review.json").is_file()), reverse=True) \
            if folder.is_dir() else []
        return {"reviews": [{"week": w, "html": f"{base(request)}/reviews/{w}/review.html",
                             "json": f"{base(request)}/reviews/{w}/review.json"} for w in weeks]}

    # ------------------------------------------------------------------ HTML
    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request):
        rows = runs_data()
        return page(request, "Runs", "/api/runs", [_section("runs", rows, links={"run_id": base(request) +
                                                                                  "/runs/{value}"})])

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def ledger_page(request: Request, run_id: str):
        data = ledger_data(run_id)
        ledger = [{"field": k, "value": v} for k, v in data["ledger"].items()]
        return page(request, f"Ledger of run {run_id}", f"/api/runs/{run_id}",
                    [_section("counts per step", data["step_table"]), _section("ledger", ledger)],
                    run_id=run_id, check=data["check"])

    @app.get("/runs/{run_id}/quarantine", response_class=HTMLResponse)
    def quarantine_page(request: Request, run_id: str, q: str | None = None, rule: str | None = None,
                        entity: str | None = None, limit: int = Query(200, ge=1, le=5000),
                        offset: int = Query(0, ge=0)):
        data = quarantine_data(run_id, q, rule, entity, limit, offset)
        query = request.url.query
        return page(request, f"Quarantine of run {run_id}",
                    f"/api/runs/{run_id}/quarantine" + (f"?{query}" if query else ""),
                    [_section("rows by rule", data["by_rule"]),
                     _section("quarantined rows", data["rows"], total=data["total"])],
                    run_id=run_id, search={"q": q, "rule": rule, "entity": entity})

    @app.get("/runs/{run_id}/queues", response_class=HTMLResponse)
    def queues_page(request: Request, run_id: str, limit: int = Query(500, ge=1, le=5000)):
        data = queues_data(run_id, limit)
        return page(request, f"Queues of run {run_id}", f"/api/runs/{run_id}/queues",
                    [_section("sales queue", data["sales_queue"]["rows"], total=data["sales_queue"]["total"]),
                     _section("nurture queue", data["nurture_queue"]["rows"], total=data["nurture_queue"]["total"])],
                    run_id=run_id, note=data["note"])

    @app.get("/runs/{run_id}/flags", response_class=HTMLResponse)
    def flags_page(request: Request, run_id: str, flag: str | None = None, status: str | None = None,
                   owner_id: str | None = None, limit: int = Query(500, ge=1, le=5000)):
        data = flags_data(run_id, flag, status, owner_id, limit)
        query = request.url.query
        return page(request, f"Flags of run {run_id}", f"/api/runs/{run_id}/flags" + (f"?{query}" if query else ""),
                    [_section("flags by rule and status", data["counts"]),
                     _section("flags", data["rows"], total=data["total"])],
                    run_id=run_id, search={"flag": flag, "status": status, "owner_id": owner_id})

    def _file_in(folder: Path | None, path: str) -> FileResponse:
        if folder is None:
            raise HTTPException(status_code=404, detail="not built yet")
        root = folder.resolve()
        target = (root / (path or "index.html")).resolve()
        if root not in target.parents and target != root or not target.is_file():
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(target)

    @app.get("/data-docs/{path:path}")
    def data_docs(path: str):
        return _file_in(data_docs_dir(), path)

    @app.get("/reviews", response_class=HTMLResponse)
    def reviews_page(request: Request):
        rows = api_reviews(request)["reviews"]
        return page(request, "Weekly lead reviews", "/api/reviews",
                    [_section("reviews", [{"week": r["week"], "html": r["html"], "json": r["json"]} for r in rows],
                              links={"html": "{value}", "json": "{value}"})])

    @app.get("/reviews/{path:path}")
    def review_file(path: str):
        return _file_in(reviews_dir(), path)

    @app.exception_handler(ValueError)
    def _bad_value(_request: Request, exc: ValueError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    return app
