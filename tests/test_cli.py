"""The CLI end to end in a subprocess: what a data engineer types when debugging outside Airflow."""
from __future__ import annotations

import json
import re
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
    # The command leaves without the interpreter's teardown (as Airflow's task processes do), but
    # only after closing its connections: SQLite has checkpointed and removed its write-ahead log.
    assert (tmp_path / "home" / "warehouse.db").exists()
    assert not (tmp_path / "home" / "warehouse.db-wal").exists()
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


def test_bad_yaml_names_file_line_and_column_and_v_keeps_the_traceback(tmp_path):
    sources = write_tiny_sources(tmp_path / "src")
    sources.write_text(sources.read_text().replace("kind: file\n    entity: leads", "kind: [file\n    entity: leads", 1))
    common = ["--sources", str(sources), "--home", str(tmp_path / "h"), "--logical-date", "2026-11-23"]
    out = _slowburn("run", *common, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert re.search(r"sources\.yaml, line \d+, column \d+: not valid YAML", out.stderr), out.stderr[-800:]
    verbose = _slowburn("-v", "run", *common, cwd=tmp_path)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


def test_warehouse_errors_are_clear_and_never_show_the_password(tmp_path):
    sources = write_tiny_sources(tmp_path / "src")
    for url, expected in (("postgresql://bob:Pw-s3cret-77@127.0.0.1:1/x", "the warehouse postgresql://bob:***@"),
                          ("postgres://bob:Pw-s3cret-77@127.0.0.1:1/x", "write postgresql://"),
                          ("postgresql://bob:Pw-s3cret-77@h:port/x", "cannot be parsed")):
        out = _slowburn("run", "--sources", str(sources), "--home", str(tmp_path / "h"), "--warehouse", url,
                        "--logical-date", "2026-11-23", cwd=tmp_path)
        assert out.returncode == 2 and expected in out.stderr, out.stderr[-800:]
        assert "Pw-s3cret-77" not in out.stderr + out.stdout and "Traceback" not in out.stderr
        verbose = _slowburn("-v", "run", "--sources", str(sources), "--home", str(tmp_path / "h"), "--warehouse",
                            url, "--logical-date", "2026-11-23", cwd=tmp_path)
        assert "Pw-s3cret-77" not in verbose.stderr  # the traceback is scrubbed too


def test_a_held_lock_is_named_and_unlock_releases_it(tmp_path):
    from slowburn.warehouse import Warehouse
    sources = write_tiny_sources(tmp_path / "src")
    home = tmp_path / "home"
    wh = Warehouse(f"sqlite:///{(home / 'warehouse.db').resolve()}")
    wh.acquire_run_lock("2026-11-22T000000", 1, "dead-run")
    common = ["--sources", str(sources), "--home", str(home), "--logical-date", "2026-11-23"]
    out = _slowburn("run", *common, cwd=tmp_path)
    assert out.returncode == 2 and "locked by run 2026-11-22T000000" in out.stderr and "Traceback" not in out.stderr
    assert _slowburn("unlock", *common, cwd=tmp_path).returncode == 0 and wh.run_lock() is None
    assert _slowburn("run", *common, cwd=tmp_path).returncode == 0


def test_db_upgrade_runs_the_migrations_and_current_prints_the_revision(tmp_path):
    from slowburn.migrations import head
    warehouse = ["--warehouse", f"sqlite:///{tmp_path / 'wh.db'}"]
    out = _slowburn("db", "current", *warehouse, cwd=tmp_path)
    assert out.returncode == 0 and "at revision none; head is" in out.stdout and "slowburn db upgrade" in out.stdout
    out = _slowburn("db", "upgrade", *warehouse, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"at revision {head()} (upgraded from none)" in out.stdout
    out = _slowburn("db", "current", *warehouse, cwd=tmp_path)
    assert out.returncode == 0 and f"at revision {head()} (head)" in out.stdout
    assert f"at revision {head()} (already at head)" in _slowburn("db", "upgrade", *warehouse, cwd=tmp_path).stdout
