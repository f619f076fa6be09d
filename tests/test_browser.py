"""Real browser checks in headless Chromium (DevTools protocol over a websocket): the weekly review and
the auditors' pages render readably (screenshots), and a lead's stored script never runs, not even in
the GX Data Docs (the stored-XSS case of issue 12)."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from conftest import NOW, write_tiny_sources

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
SECRET = "slowburn-browser-secret-" + "x" * 64

CHECK_PLOTS = """(() => {
  const imgs = Array.from(document.querySelectorAll('#plots img'));
  return JSON.stringify({ready: document.readyState, title: document.title, plots: imgs.map(i => {
    const r = i.getBoundingClientRect(); const s = getComputedStyle(i);
    return {id: i.id, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, shown_w: r.width,
            shown_h: r.height, visible: s.visibility === 'visible' && s.display !== 'none' && s.opacity !== '0'};
  })});
})()"""


class Browser:
    """Headless Chromium driven over the DevTools protocol (no extra Python dependency)."""

    def __init__(self, user_dir: Path, width: int = 1400, height: int = 1000):
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={user_dir}", "--remote-debugging-port=0", f"--window-size={width},{height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.n = 0
        try:
            self.ws = connect(self._page_socket(user_dir), max_size=None, open_timeout=10)
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except Exception:
            self.close()
            raise

    @staticmethod
    def _page_socket(user_dir: Path, timeout: float = 20) -> str:
        port_file = user_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_file.exists() and port_file.read_text().strip():
                port = port_file.read_text().split()[0]
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.2)
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=20))
            if reply.get("id") == self.n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, settle: float = 0.5):
        """Navigate and wait until the page has loaded (and its images tried to load)."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 20
        time.sleep(0.2)
        while time.monotonic() < deadline:
            state = self.evaluate("document.readyState + '|' + location.href")
            if state and state.startswith("complete|") and state.split("|", 1)[1] != "about:blank":
                break
            time.sleep(0.2)
        time.sleep(settle)

    def title(self) -> str:
        return self.evaluate("document.title")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# ---------------------------------------------------------------------------------------------- review
def _frames(n: int = 60) -> dict:
    """A small warehouse picture: 60 leads over three reps, scores a week apart, flags over four runs."""
    import numpy as np

    rng = np.random.default_rng(3)
    ids = [f"g{i:03d}" for i in range(n)]
    golden = pd.DataFrame({
        "golden_id": ids, "first_name": "Ann", "last_name": [f"Lee{i}" for i in range(n)], "email": None,
        "company": "Acme <b>Inc</b>", "owner_id": rng.choice(["O1", "O2", "O9"], n),
        "status": rng.choice(["new", "working", "qualified", "converted"], n),
        "stage": rng.choice(["inquiry", "mql", "sql", "opportunity", "customer"], n), "lead_source": "form_fill",
        "created_at": NOW - pd.to_timedelta(rng.integers(1, 400, n), unit="D")})
    scores = pd.DataFrame({"golden_id": ids, "score": rng.integers(0, 100, n), "tier": "warm",
                           "rep_touches": rng.integers(0, 15, n),
                           "last_touch_at": NOW - pd.to_timedelta(rng.integers(0, 60, n), unit="D")})
    before = pd.DataFrame({"golden_id": ids, "score_week_ago": rng.integers(0, 100, n)})
    owners = pd.DataFrame({"owner_id": ["O1", "O2"], "name": ["Rita Rep", "Sam Rep"], "team": ["East", "West"],
                           "active": [True, True], "deactivated_at": [pd.NaT, pd.NaT]})
    flagged = golden.iloc[:40]
    flags = pd.DataFrame({"golden_id": flagged["golden_id"], "flag": rng.choice(["orphaned", "dropped_followup"], 40),
                          "severity": "medium", "owner_id": flagged["owner_id"], "status": "open",
                          "reason": "r <i>x</i>", "suggested_action": "follow up"})
    runs = [f"2026-11-{d:02d}T000000" for d in (2, 9, 16, 23)]
    trend = pd.DataFrame([{"run_id": r, "flag": f, "n": int(rng.integers(1, 20))} for r in runs
                          for f in ("orphaned", "sla_breach")])
    return {"golden": golden, "scores": scores, "before": before, "owners": owners, "flags": flags,
            "flag_trend": trend, "latest_run": runs[-1], "prior_run": runs[-2], "sales_queue": None}


def test_review_page_renders_with_visible_plots_and_the_action_list_fits_one_screen(tmp_path, browser):
    from slowburn.report.review import write_review

    headline = write_review(_frames(), tmp_path / "reviews", NOW)
    browser.open(Path(headline["paths"]["html"]).resolve().as_uri(), settle=0)
    state, deadline = None, time.monotonic() + 20
    while time.monotonic() < deadline:
        state = json.loads(browser.evaluate(CHECK_PLOTS) or "{}")
        if state.get("ready") == "complete" and state.get("plots") and all(p["complete"] for p in state["plots"]):
            break
        time.sleep(0.2)
    assert state["title"].startswith("Weekly lead review")
    ids = {p["id"] for p in state["plots"]}
    assert ids == {"plot-funnel_by_stage", "plot-lead_age_distribution", "plot-score_distribution",
                   "plot-flags_over_time", "plot-follow_up_depth"}
    for p in state["plots"]:  # decoded (natural size) and laid out on the page (shown size), not hidden
        assert p["complete"] and p["w"] > 100 and p["h"] > 100, p
        assert p["shown_w"] > 100 and p["shown_h"] > 100 and p["visible"], p
    assert _png_size(browser.screenshot(tmp_path / "review.png")) == (1400, 1000)
    # A rep's page: the action list (at most ACTIONS_ON_TOP rows) ends within the first screen.
    browser.open((Path(headline["paths"]["folder"]) / "reps" / "O1.html").resolve().as_uri())
    bottom = browser.evaluate("document.querySelector('#action-list').getBoundingClientRect().bottom")
    assert 0 < bottom <= browser.evaluate("window.innerHeight")
    assert browser.evaluate("document.querySelectorAll('#action-list tr').length") - 1 <= 10
    browser.screenshot(tmp_path / "rep.png")


# ---------------------------------------------------------------------------------------------- auditors' view
class _Beacon(BaseHTTPRequestHandler):
    """Records every request: a script that runs would call home here. /control.html is the payload
    on a page with no protection at all, to prove the payload does run when nothing stops it."""
    hits: list = []
    payload = ""

    def do_GET(self):
        type(self).hits.append(self.path)
        body = (f"<html><head><title>control</title></head><body>{self.payload}</body></html>"
                if self.path == "/control.html" else "").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def beacon():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Beacon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    _Beacon.payload = (f"<img src=x onerror=\"document.title='PWNED';"
                       f"fetch('http://127.0.0.1:{port}/pwned')\">")
    yield _Beacon
    server.shutdown()


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, beacon):
    """A nightly run whose lead carries a script in its status (quarantined: unknown status) and markup
    in its company."""
    from slowburn.pipeline import RunContext, run_all

    tmp = tmp_path_factory.mktemp("hostile")
    sources = write_tiny_sources(tmp / "sources")
    leads = sources.parent / "leads.csv"
    quoted = '"' + beacon.payload.replace('"', '""') + '"'
    leads.write_text(leads.read_text(encoding="utf-8").replace(
        "L7,Dee,Status,dee@initech.com,,Initech,,US,O1,Bogus", f"L7,Dee,Status,dee@initech.com,,Initech,,US,O1,{quoted}")
        .replace("L3,Ann,Lee,ann@globex.com,,Globex", f"L3,Ann,Lee,ann@globex.com,,{quoted}"), encoding="utf-8")
    ctx = RunContext(logical_date=NOW, sources_path=sources, home=tmp / "home")
    run_all(ctx)
    return ctx


@pytest.fixture(scope="module")
def served(hostile_run):
    """The auditors' app on a real loopback HTTP server, mounted as Airflow mounts it, and a JWT."""
    import uvicorn
    from fastapi import FastAPI

    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", SECRET)
    from airflow import settings
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken

    from slowburn.airflow.webapp import create_app

    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    token = create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="auditor", role="admin"))
    parent = FastAPI()
    parent.mount("/slowburn", create_app(warehouse_url=hostile_run.warehouse_url, home=hostile_run.home))
    server = uvicorn.Server(uvicorn.Config(parent, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", token
    server.should_exit = True
    thread.join(timeout=10)
    mp.undo()


def _login(browser, origin: str, token: str):
    browser.call("Network.enable")
    browser.call("Network.setCookie", name="_token", value=token, url=origin + "/")


def test_a_leads_script_never_runs_in_data_docs_or_our_pages(browser, served, hostile_run, beacon, tmp_path):
    origin, token = served
    _login(browser, origin, token)
    docs = Path(hostile_run.home) / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    [page] = [p for p in docs.rglob("*.html") if "slowburn_leads" in str(p) and "validations" in str(p)]
    raw = page.read_text(encoding="utf-8")
    assert "<script" not in raw and "onerror" not in raw and "cdn" not in raw.lower()  # localised, script-free
    assert "<img src=x" in raw  # GX put the value in unescaped: only the page's defences stop it
    # A page the localiser did not clean (say a GX upgrade adds one): the sandbox CSP alone must hold.
    (docs / "unclean.html").write_text(f"<html><head><title>unclean</title></head><body>{beacon.payload}"
                                       "<script>document.title='PWNED'</script></body></html>", encoding="utf-8")
    beacon.hits.clear()
    visits = [f"/slowburn/data-docs/{page.relative_to(docs)}", "/slowburn/data-docs/unclean.html",
              f"/slowburn/runs/{hostile_run.run_id}/quarantine", f"/slowburn/runs/{hostile_run.run_id}/flags",
              f"/slowburn/runs/{hostile_run.run_id}/queues?queue=nurture", f"/slowburn/runs/{hostile_run.run_id}/actions"]
    for path in visits:
        browser.open(origin + path, settle=0.8)
        assert browser.title() != "PWNED", path
        browser.screenshot(tmp_path / (path.strip("/").replace("/", "_")[:80] + ".png"))
    assert not [h for h in beacon.hits if h.startswith("/pwned")], beacon.hits
    # The quarantine page shows the value as text, so an auditor can see what was attempted.
    browser.open(origin + f"/slowburn/runs/{hostile_run.run_id}/quarantine?rule=unknown_status")
    assert "onerror" in browser.evaluate("document.body.innerText")
    # The control: the same payload on a page without these defences does run, in this browser.
    browser.open(_control_url(beacon), settle=1.5)
    assert browser.title() == "PWNED" and any(h.startswith("/pwned") for h in beacon.hits)


def _control_url(beacon) -> str:
    import re
    port = re.search(r"127\.0\.0\.1:(\d+)", beacon.payload).group(1)
    return f"http://127.0.0.1:{port}/control.html"


def test_data_docs_render_offline_with_vendored_styles(browser, served, hostile_run):
    origin, token = served
    _login(browser, origin, token)
    browser.open(origin + "/slowburn/data-docs/index.html")
    sheets = json.loads(browser.evaluate("JSON.stringify(Array.from(document.styleSheets).map(s => s.href))"))
    assert len([h for h in sheets if h and "/static/vendor/" in h]) >= 3, sheets
    assert not [h for h in sheets if h and not h.startswith(origin)]  # nothing from a CDN
    # The sandbox makes the page's origin opaque (its sheets' rules are not readable from it), so check
    # that the vendored stylesheets apply: Bootstrap's font stack and its grid gutter.
    assert browser.evaluate("getComputedStyle(document.body).fontFamily").startswith("-apple-system")


def test_auditors_pages_read_like_a_call_list(browser, served, hostile_run, tmp_path):
    origin, token = served
    _login(browser, origin, token)
    browser.open(origin + f"/slowburn/runs/{hostile_run.run_id}/queues")
    text = browser.evaluate("document.body.innerText")
    assert "Bill Smith" in text or "William Smith" in text
    assert "America/Los_Angeles" in text and "requested a demo" in text and " UTC" in text
    tallest = browser.evaluate("Math.max(...Array.from(document.querySelectorAll('table tr')).map("
                               "r => r.getBoundingClientRect().height))")
    assert tallest < 120  # reasons in words: a row is a line or three, not a 600 px JSON dump
    assert _png_size(browser.screenshot(tmp_path / "sales_queue.png")) == (1400, 1000)
    browser.open(origin + f"/slowburn/runs/{hostile_run.run_id}/quarantine?limit=2")
    assert "rows 1-2 of" in browser.evaluate("document.body.innerText")
    assert browser.evaluate("document.querySelectorAll('.pager a').length") >= 1
    browser.screenshot(tmp_path / "quarantine.png")
