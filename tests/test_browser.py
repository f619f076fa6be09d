"""One real browser check: the weekly review page renders in headless Chromium with its plots visible."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from conftest import NOW, write_tiny_sources

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")

CHECK_PLOTS = """(() => {
  const imgs = Array.from(document.querySelectorAll('#plots img'));
  return JSON.stringify({ready: document.readyState, title: document.title, plots: imgs.map(i => {
    const r = i.getBoundingClientRect(); const s = getComputedStyle(i);
    return {id: i.id, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, shown_w: r.width,
            shown_h: r.height, visible: s.visibility === 'visible' && s.display !== 'none' && s.opacity !== '0'};
  })});
})()"""


def _devtools(user_dir: Path, timeout: float = 20) -> str:
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


def _evaluate(ws, expression: str, msg_id: int):
    ws.send(json.dumps({"id": msg_id, "method": "Runtime.evaluate",
                        "params": {"expression": expression, "returnByValue": True}}))
    while True:
        reply = json.loads(ws.recv(timeout=10))
        if reply.get("id") == msg_id:
            return reply["result"]["result"].get("value")


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
    owners = pd.DataFrame({"owner_id": ["O1", "O2"], "name": ["Rita Rep", "Sam Rep"], "team": ["East", "West"]})
    flags = pd.DataFrame({"golden_id": ids[:20], "flag": rng.choice(["orphaned", "sla_breach"], 20)})
    runs = [f"2026-11-{d:02d}T000000" for d in (2, 9, 16, 23)]
    trend = pd.DataFrame([{"run_id": r, "flag": f, "n": int(rng.integers(1, 20))} for r in runs
                          for f in ("orphaned", "sla_breach")])
    return {"golden": golden, "scores": scores, "before": before, "owners": owners, "flags": flags,
            "flag_trend": trend, "latest_run": runs[-1], "prior_run": runs[-2]}


def test_review_page_renders_with_visible_plots(tmp_path):
    from websockets.sync.client import connect

    from slowburn.report.review import write_review

    headline = write_review(_frames(), tmp_path / "reviews", NOW)
    url = Path(headline["paths"]["html"]).resolve().as_uri()
    user_dir = tmp_path / "chromium-profile"
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={user_dir}", "--remote-debugging-port=0", "--window-size=1400,1000",
                             url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with connect(_devtools(user_dir), max_size=None, open_timeout=10) as ws:
            state, deadline, n = None, time.monotonic() + 20, 0
            while time.monotonic() < deadline:
                n += 1
                state = json.loads(_evaluate(ws, CHECK_PLOTS, n) or "{}")
                if state.get("ready") == "complete" and state.get("plots") and all(p["complete"] for p in state["plots"]):
                    break
                time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert state["title"].startswith("Weekly lead review")
    ids = {p["id"] for p in state["plots"]}
    assert ids == {"plot-funnel_by_stage", "plot-lead_age_distribution", "plot-score_distribution",
                   "plot-flags_over_time", "plot-follow_up_depth"}
    for p in state["plots"]:  # decoded (natural size) and laid out on the page (shown size), not hidden
        assert p["complete"] and p["w"] > 100 and p["h"] > 100, p
        assert p["shown_w"] > 100 and p["shown_h"] > 100 and p["visible"], p
