"""The auditors' view: every page and its JSON twin, behind Airflow's own authentication."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import NOW, write_tiny_sources

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[1]
SECRET = "slowburn-test-secret-" + "x" * 64


@pytest.fixture(scope="module")
def airflow_token():
    """A JWT minted by Airflow's configured auth manager, as the UI would hold it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", SECRET)
    from airflow import settings
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken

    RevokedToken.__table__.create(settings.engine, checkfirst=True)  # token validation checks revocations
    manager = create_auth_manager()
    yield manager.generate_jwt(SimpleAuthManagerUser(username="auditor", role="viewer"))
    mp.undo()


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


PAGES = ["/slowburn/", "/slowburn/api/runs", "/slowburn/runs/{run}", "/slowburn/api/runs/{run}",
         "/slowburn/runs/{run}/quarantine", "/slowburn/api/runs/{run}/quarantine", "/slowburn/runs/{run}/queues",
         "/slowburn/api/runs/{run}/queues", "/slowburn/runs/{run}/flags", "/slowburn/api/runs/{run}/flags",
         "/slowburn/data-docs/index.html", "/slowburn/api/data-docs", "/slowburn/reviews", "/slowburn/api/reviews"]


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
    if "/api/" in path:
        assert isinstance(got.json(), dict)
    elif path.endswith("index.html"):
        assert "<html" in got.text.lower()
    else:
        assert got.text.startswith("<!doctype html>") and "/slowburn/" in got.text


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
    assert [r["run_id"] for r in runs] == [run.run_id] and runs[0]["balanced"]


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
    assert flags["total"] == 2 and {r["flag"] for r in flags["rows"]} == {"orphaned"}
    assert all(r["status"] == "open" and r["reason"] and r["suggested_action"] for r in flags["rows"])
    queues = client.get(f"/slowburn/api/runs/{run.run_id}/queues", headers=auth(airflow_token)).json()
    ledger = client.get(f"/slowburn/api/runs/{run.run_id}", headers=auth(airflow_token)).json()["ledger"]
    assert queues["sales_queue"]["total"] == ledger["sales_queue"] and queues["sales_queue"]["rows"]
    assert queues["nurture_queue"]["total"] == ledger["nurture_queue"] and queues["nurture_queue"]["rows"]
    assert client.get("/slowburn/api/runs/1999-01-01T000000", headers=auth(airflow_token)).status_code == 404


def test_data_docs_are_served_without_path_escapes(client, airflow_token):
    docs = client.get("/slowburn/api/data-docs", headers=auth(airflow_token)).json()
    assert docs["available"] and docs["pages"]
    assert client.get("/slowburn/data-docs/../../warehouse.db", headers=auth(airflow_token)).status_code == 404
    assert client.get("/slowburn/data-docs/%2e%2e/%2e%2e/warehouse.db",
                      headers=auth(airflow_token)).status_code == 404


def test_plugin_registers_the_app_and_nav_link_and_stays_light():
    spec = importlib.util.spec_from_file_location("slowburn_plugin_under_test", ROOT / "plugins" / "slowburn_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "plugins" / "slowburn_plugin.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])
