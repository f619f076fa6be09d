"""The CLI end to end in a subprocess: what a data engineer types when debugging outside Airflow."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import write_tiny_sources


def _slowburn(*args, cwd):
    return subprocess.run([sys.executable, "-m", "slowburn.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_run_status_and_writeback_dry_run(tmp_path):
    sources = write_tiny_sources(tmp_path / "src")
    common = ["--sources", str(sources), "--home", str(tmp_path / "home"), "--logical-date", "2026-11-23"]
    run = _slowburn("run", *common, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "landed 10 = linked 5 + quarantined 5 (balanced)" in run.stdout
    status = _slowburn("status", *common, cwd=tmp_path)
    assert status.returncode == 0 and "summary.html" in status.stdout
    plan = _slowburn("writeback", *common, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr[-2000:]
    counts = json.loads(plan.stdout[: plan.stdout.rindex("}") + 1])
    assert counts["dry_run"] is True and counts["sent"] == 0
    assert (tmp_path / "home" / "writeback").is_dir()
    review = _slowburn("review", *common, cwd=tmp_path)
    assert review.returncode == 0, review.stderr[-2000:]
    assert list((tmp_path / "home" / "reviews").glob("*/review.html"))


def test_missing_sources_file_is_a_clear_error(tmp_path):
    out = _slowburn("run", "--sources", str(tmp_path / "nope.yaml"), "--home", str(tmp_path / "h"), cwd=tmp_path)
    assert out.returncode == 2
    assert "nope.yaml does not exist" in out.stderr and "Traceback" not in out.stderr
