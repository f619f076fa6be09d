"""The auditors' view: every page and its JSON twin, behind Airflow's own authentication."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
import json

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import NOW, write_tiny_sources

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[1]
SECRET = "slowburn-test-secret-" + "x" * 64


def _mint(role: str, username: str | None = None) -> str:
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username or role, role=role))


@pytest.fixture(scope="module")
def tokens():
    """JWTs minted by Airflow's configured auth manager, as the UI would hold them, per role."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", SECRET)
    from airflow import settings
    from airflow.models.revoked_token import RevokedToken

    RevokedToken.__table__.create(settings.engine, checkfirst=True)  # token validation checks revocations
    yield {role: _mint(role) for role in ("viewer", "user", "op", "admin")}
    mp.undo()


@pytest.fixture(scope="module")
def airflow_token(tokens):
    """A role allowed to see lead data (the default minimum is op)."""
    return tokens["op"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from slowburn.pipeline import RunContext, run_all
    tmp = tmp_path_factory.mktemp("webapp")
    ctx = RunContext(logical_date=NOW, sources_path=write_tiny_sources(tmp / "sources"), home=tmp / "home")
    run_all(ctx)
    return ctx


@pytest.fixture(scope="module")
def client(run, airflow_token):
    from slowburn.airflow.webapp import create_app
    parent = FastAPI()  # mounted the way Airflow's API server mounts plugin apps
    parent.mount("/slowburn", create_app(warehouse_url=run.warehouse_url, home=run.home))
    return TestClient(parent)


def auth(token):
    return {"Authorization": f"Bearer {token}"}


OPEN_PAGES = ["/slowburn/", "/slowburn/api/runs", "/slowburn/runs/{run}", "/slowburn/api/runs/{run}"]
LEAD_PAGES = ["/slowburn/runs/{run}/quarantine", "/slowburn/api/runs/{run}/quarantine", "/slowburn/runs/{run}/queues",
              "/slowburn/api/runs/{run}/queues", "/slowburn/runs/{run}/queues?queue=nurture",
              "/slowburn/api/runs/{run}/queues?queue=nurture", "/slowburn/runs/{run}/flags",
              "/slowburn/api/runs/{run}/flags", "/slowburn/runs/{run}/actions", "/slowburn/api/runs/{run}/actions",
              "/slowburn/data-docs/index.html", "/slowburn/api/data-docs", "/slowburn/reviews",
              "/slowburn/api/reviews"]
PAGES = OPEN_PAGES + LEAD_PAGES


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_requests_are_refused(client, run, path):
    got = client.get(path.format(run=run.run_id))
    assert got.status_code == 401
    bad = client.get(path.format(run=run.run_id), headers=auth("not-a-jwt"))
    assert bad.status_code in (401, 403)


@pytest.mark.parametrize("path", PAGES)
def test_authenticated_pages_render(client, run, airflow_token, path):
    got = client.get(path.format(run=run.run_id), headers=auth(airflow_token))
    assert got.status_code == 200, got.text[:300]
    csp = got.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp  # no script may run on any page
    if "/api/" in path:
        assert isinstance(got.json(), dict)
    elif path.endswith("index.html"):
        assert "<html" in got.text.lower() and csp.startswith("sandbox;")
        assert "<script" not in got.text.lower() and "cdn" not in got.text.lower()
    else:
        assert got.text.startswith("<!doctype html>") and "/slowburn/" in got.text


@pytest.mark.parametrize("path", LEAD_PAGES)
def test_lead_data_needs_the_permission(client, run, tokens, path):
    """Any logged-in role sees the runs and ledger; lead data needs op or more (simple auth manager)."""
    for role, allowed in (("viewer", False), ("user", False), ("op", True), ("admin", True)):
        got = client.get(path.format(run=run.run_id), headers=auth(tokens[role]))
        assert got.status_code == (200 if allowed else 403), (role, got.text[:200])
    for path in OPEN_PAGES:
        assert client.get(path.format(run=run.run_id), headers=auth(tokens["viewer"])).status_code == 200


def test_the_minimum_role_is_configurable(client, run, tokens, monkeypatch):
    url = f"/slowburn/api/runs/{run.run_id}/flags"
    monkeypatch.setenv("AIRFLOW__SLOWBURN__LEAD_DATA_MIN_ROLE", "viewer")
    assert client.get(url, headers=auth(tokens["viewer"])).status_code == 200
    monkeypatch.setenv("AIRFLOW__SLOWBURN__LEAD_DATA_MIN_ROLE", "admin")
    assert client.get(url, headers=auth(tokens["op"])).status_code == 403
    monkeypatch.setenv("AIRFLOW__SLOWBURN__LEAD_DATA_MIN_ROLE", "boss")
    assert "lead_data_min_role" in client.get(url, headers=auth(tokens["admin"])).json()["detail"]


from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager  # noqa: E402


class GrantingAuthManager(SimpleAuthManager):
    """An auth manager with real custom-view grants (as FAB keeps per role): only 'auditor' may read
    the slowburn lead data resource."""

    def is_authorized_custom_view(self, *, method, resource_name, user):
        from slowburn.airflow.webapp import LEAD_DATA_RESOURCE
        return method == "GET" and resource_name == LEAD_DATA_RESOURCE and user.get_name() == "auditor"


def test_other_auth_managers_decide_through_the_custom_view_permission(client, run, tokens, monkeypatch):
    from airflow.api_fastapi.app import _AuthManagerState, create_auth_manager
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "test_webapp.GrantingAuthManager")
    _AuthManagerState.instance = None
    try:
        assert isinstance(create_auth_manager(), GrantingAuthManager)
        url = f"/slowburn/api/runs/{run.run_id}/queues"
        assert client.get(url, headers=auth(_mint("viewer", "auditor"))).status_code == 200
        assert client.get(url, headers=auth(_mint("admin", "someone"))).status_code == 403
        assert client.get(f"/slowburn/api/runs/{run.run_id}", headers=auth(_mint("viewer", "x"))).status_code == 200
    finally:
        monkeypatch.undo()
        _AuthManagerState.instance = None
        create_auth_manager()


def test_the_ui_cookie_also_authenticates(client, run, airflow_token):
    cookie_client = TestClient(client.app, cookies={"_token": airflow_token})
    assert cookie_client.get("/slowburn/api/runs").status_code == 200


def test_ledger_shows_counts_per_step_and_the_balance(client, run, airflow_token):
    data = client.get(f"/slowburn/api/runs/{run.run_id}", headers=auth(airflow_token)).json()
    check = data["check"]
    assert check["landed_leads"] == 10 and check["quarantined_leads"] == 5 and check["linked_leads"] == 5
    assert check["balanced"] is True and check["invariant_ok"] is True
    assert set(data["steps"]) >= {"extract", "validate", "dedupe", "flag"}
    html = client.get(f"/slowburn/runs/{run.run_id}", headers=auth(airflow_token)).text
    assert "landed 10" in html and "balanced" in html and "counts per step" in html
    runs = client.get("/slowburn/api/runs", headers=auth(airflow_token)).json()["runs"]
    assert runs[0]["logical_date"].endswith("+00:00")
    assert [r["run_id"] for r in runs] == [run.run_id] and runs[0]["balanced"]


def test_every_table_pages_and_searches(client, run, airflow_token):
    h = auth(airflow_token)
    base = f"/slowburn/api/runs/{run.run_id}"
    first = client.get(f"{base}/quarantine", params={"limit": 2}, headers=h).json()
    second = client.get(f"{base}/quarantine", params={"limit": 2, "offset": 2}, headers=h).json()
    everything = client.get(f"{base}/quarantine", headers=h).json()
    assert first["total"] == everything["total"] == len(everything["rows"]) > 2
    assert first["rows"] + second["rows"] == everything["rows"][:4]
    page = client.get(f"/slowburn/runs/{run.run_id}/quarantine", params={"limit": 2}, headers=h).text
    assert "rows 1-2 of" in page and "offset=2" in page and "next</a>" in page
    reps = client.get(f"{base}/actions", params={"limit": 1}, headers=h).json()
    more = client.get(f"{base}/actions", params={"limit": 1, "rep_offset": 1}, headers=h).json()
    assert reps["reps"] >= 2 and len(reps["per_rep"]) == len(more["per_rep"]) == 1
    assert reps["per_rep"] != more["per_rep"]
    for path, params in ((f"{base}/flags", {"q": "owner"}), (f"{base}/queues", {"q": "smith"}),
                         (f"{base}/queues", {"queue": "nurture", "q": "ann"}), (f"{base}/actions", {"q": "reassign"}),
                         ("/slowburn/api/runs", {"q": run.run_id[:7]})):
        data = client.get(path, params=params, headers=h).json()
        rows = data.get("rows", data.get("runs"))
        assert rows and data["total"] == len(rows), (path, data)
        assert all(params["q"].lower() in json.dumps(r).lower() for r in rows), path
        nothing = client.get(path, params={**params, "q": "no-such-thing-xyz"}, headers=h).json()
        assert nothing["total"] == 0, path


def test_sales_queue_is_a_call_list(client, run, airflow_token):
    data = client.get(f"/slowburn/api/runs/{run.run_id}/queues", headers=auth(airflow_token)).json()
    [bill] = [r for r in data["rows"] if r["name"] in ("Bill Smith", "William Smith")]
    assert bill["company"] and bill["email"] and bill["phone"] == "+14155550100" and bill["title"] == "VP Sales"
    assert bill["time_zone"] == "America/Los_Angeles" and bill["time_zone_from"] == "phone" and bill["local_time"]
    assert bill["owner"] in ("Rita Rep", "Sam Rep") and bill["respond_by"].endswith("+00:00")
    assert "requested a demo" in bill["why"] and "pricing view" in bill["why"]
    assert isinstance(bill["reasons"], list) and {"factor", "points"} <= set(bill["reasons"][0])
    page = client.get(f"/slowburn/runs/{run.run_id}/queues", headers=auth(airflow_token)).text
    assert "America/Los_Angeles" in page and "requested a demo" in page and " UTC" in page
    assert '[{"factor"' not in page and "{&#34;factor" not in page  # reasons in words, not JSON


def test_flags_have_structured_evidence_and_owner_names(client, run, airflow_token):
    data = client.get(f"/slowburn/api/runs/{run.run_id}/flags", params={"flag": "orphaned"},
                      headers=auth(airflow_token)).json()
    assert all(isinstance(r["evidence"], dict) for r in data["rows"])
    owners = {r["owner"] for r in data["rows"]}
    assert owners == {"O9 (not in the owners table)", "Gone Rep (left 2026-06-01)"}
    assert all(r["opened_at"].endswith("+00:00") for r in data["rows"])
    actions = client.get(f"/slowburn/api/runs/{run.run_id}/actions", headers=auth(airflow_token)).json()
    assert len({r["golden_id"] for r in actions["rows"]}) == len(actions["rows"]) == actions["total"]
    assert sum(r["actions"] for r in actions["per_rep"]) == actions["total"]


def test_values_are_escaped(client, run, airflow_token):
    page = client.get(f"/slowburn/runs/{run.run_id}/quarantine", params={"q": "<script>alert(1)</script>"},
                      headers=auth(airflow_token)).text
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_quarantine_is_searchable(client, run, airflow_token):
    url = f"/slowburn/api/runs/{run.run_id}/quarantine"
    everything = client.get(url, headers=auth(airflow_token)).json()
    assert {r["rule"] for r in everything["rows"]} >= {"invalid_email", "no_contact_point"}
    assert all(r["reason"] for r in everything["rows"])
    found = client.get(url, params={"q": "bob@@"}, headers=auth(airflow_token)).json()
    assert found["total"] >= 1 and {r["source_id"] for r in found["rows"]} == {"L4"}
    by_rule = client.get(url, params={"rule": "unknown_status"}, headers=auth(airflow_token)).json()
    assert {r["source_id"] for r in by_rule["rows"]} == {"L7"}
    page = client.get(f"/slowburn/runs/{run.run_id}/quarantine", params={"q": "bob@@"},
                      headers=auth(airflow_token)).text
    assert "L4" in page and "L7" not in page


def test_flags_and_queues(client, run, airflow_token):
    flags = client.get(f"/slowburn/api/runs/{run.run_id}/flags", params={"flag": "orphaned"},
                       headers=auth(airflow_token)).json()
    assert flags["total"] == 2 and {r["flag"] for r in flags["rows"]} == {"orphaned"}  # L3 and L9
    assert all(r["status"] == "open" and r["reason"] and r["suggested_action"] for r in flags["rows"])
    queues = client.get(f"/slowburn/api/runs/{run.run_id}/queues", headers=auth(airflow_token)).json()
    ledger = client.get(f"/slowburn/api/runs/{run.run_id}", headers=auth(airflow_token)).json()["ledger"]
    nurture = client.get(f"/slowburn/api/runs/{run.run_id}/queues", params={"queue": "nurture"},
                         headers=auth(airflow_token)).json()
    assert queues["total"] == ledger["sales_queue"] and queues["rows"]
    assert nurture["total"] == ledger["nurture_queue"] and nurture["rows"]
    assert client.get("/slowburn/api/runs/1999-01-01T000000", headers=auth(airflow_token)).status_code == 404


def test_data_docs_are_served_without_path_escapes(client, airflow_token):
    docs = client.get("/slowburn/api/data-docs", headers=auth(airflow_token)).json()
    assert docs["available"] and docs["pages"]
    assert client.get("/slowburn/data-docs/../../warehouse.db", headers=auth(airflow_token)).status_code == 404
    assert client.get("/slowburn/data-docs/%2e%2e/%2e%2e/warehouse.db",
                      headers=auth(airflow_token)).status_code == 404


def test_plugin_registers_the_app_and_nav_link_and_stays_light():
    # The plugin lives in the package (entry point); plugins/slowburn_plugin.py re-exports it when slowburn
    # is not installed (tests/test_provider.py checks it is registered exactly once either way).
    from slowburn.airflow import plugin as module

    plugin = module.SlowburnPlugin
    [entry] = plugin.fastapi_apps
    assert entry["url_prefix"] == "/slowburn" and entry["app"] is module.auditors_app
    [view] = plugin.external_views
    assert view["href"] == "/slowburn/" and view["destination"] == "nav" and view["url_route"]
    # The lazily built app is protected too.
    parent = FastAPI()
    parent.mount(entry["url_prefix"], entry["app"])
    assert TestClient(parent).get("/slowburn/api/runs").status_code == 401
    code = ("import sys, runpy; runpy.run_path(sys.argv[1]); "
            "print(','.join(m for m in ('pandas', 'great_expectations', 'matplotlib', 'slowburn.airflow.webapp') "
            "if m in sys.modules))")
    for path in (ROOT / "plugins" / "slowburn_plugin.py", ROOT / "plugins" / "slowburn" / "airflow" / "plugin.py"):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                             check=True)
        assert out.stdout.strip().splitlines()[-1:] in ([], [""]), path


@pytest.mark.postgres
def test_every_page_on_a_postgresql_warehouse(tmp_path, tokens, pg_url):
    """The production warehouse: the same pages and JSON twins over PostgreSQL (typed timestamps and
    booleans instead of SQLite text), and the weekly review from it."""
    from slowburn.airflow.webapp import create_app
    from slowburn.pipeline import RunContext, run_all
    from slowburn.report.review import write_weekly_review

    ctx = RunContext(logical_date=NOW, sources_path=write_tiny_sources(tmp_path / "src"), home=tmp_path / "home",
                     warehouse_url=pg_url)
    run_all(ctx)
    write_weekly_review(ctx.warehouse(), tmp_path / "home" / "reviews", NOW + pd.Timedelta(hours=6))
    parent = FastAPI()
    parent.mount("/slowburn", create_app(warehouse_url=pg_url, home=ctx.home))
    pg_client = TestClient(parent)
    for path in PAGES:
        got = pg_client.get(path.format(run=ctx.run_id), headers=auth(tokens["op"]))
        assert got.status_code == 200, (path, got.text[:300])
    queue = pg_client.get(f"/slowburn/api/runs/{ctx.run_id}/queues", headers=auth(tokens["op"])).json()
    assert queue["rows"] and queue["rows"][0]["respond_by"].endswith("+00:00") and queue["rows"][0]["why"]
    found = pg_client.get(f"/slowburn/api/runs/{ctx.run_id}/flags", params={"q": "owner"},
                          headers=auth(tokens["op"])).json()
    assert found["total"] >= 2
    reviews = pg_client.get("/slowburn/api/reviews", headers=auth(tokens["op"])).json()["reviews"]
    assert [r["week"] for r in reviews] == ["2026-W47"]
