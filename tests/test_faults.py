"""The fault matrix (bench/faults.py) as tests: bad input, SIGKILL in every step, re-runs, concurrent runs.

Every case runs the real pipeline against a real warehouse and audits it: nothing lost, nothing
duplicated, and a run that must not commit stops with a named error and leaves the warehouse as it was.
`make faults` runs every case on both backends; here SQLite runs nearly all of them and PostgreSQL the
ones where it behaves differently (COPY, row locks, concurrent transactions), to keep `make test` fast.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import faults  # noqa: E402

# Left to `make faults`: cases the unit tests already cover (tests/sources/test_files.py, test_pipeline.py).
SQLITE_CASES = [c.name for c in faults.CASES if c.name not in ("rerun_same_date", "duplicate_ids", "crlf_bom_unicode",
                                                                "header_only", "sigkill_extract_new_attempt")]
POSTGRES_CASES = ["nul_byte", "empty_night", "sigkill_load", "concurrent_same_date", "concurrent_two_dates",
                  "rerun_older_date", "lost_run_folder", "cli_warehouse_down"]
_REFERENCE: dict[str, dict] = {}


def _reference(backend: str) -> dict:
    if backend not in _REFERENCE:
        _REFERENCE[backend] = faults.reference_counts(backend)
    return _REFERENCE[backend]


def _check(name: str, backend: str) -> None:
    outcome = faults.run_case(faults.BY_NAME[name], backend, _reference(backend))
    assert (outcome.survived, outcome.lost, outcome.duplicated) == (True, 0, 0), outcome.note


@pytest.mark.parametrize("name", SQLITE_CASES)
def test_fault_on_sqlite(name):
    _check(name, "sqlite")


@pytest.mark.postgres
@pytest.mark.parametrize("name", POSTGRES_CASES)
def test_fault_on_postgres(name):
    if not faults.postgres_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    _check(name, "postgresql")


def test_the_audit_sees_loss_and_duplication(tmp_path):
    """The audit itself can fail: a linked row deleted is lost, a quarantined copy of a linked row doubled."""
    from slowburn.pipeline import run_all
    with faults.backend("sqlite", tmp_path) as url:
        env = faults.Env("sqlite", tmp_path, url)
        run_all(env.ctx(env.sources()))
        wh = env.warehouse()
        assert faults.audit(wh, faults.TINY_RECORDS)[:2] == (0, 0)
        with wh.engine.begin() as conn:
            key = conn.exec_driver_sql("SELECT row_key FROM lead_links LIMIT 1").scalar()
            conn.exec_driver_sql("INSERT INTO quarantine (run_id, entity, row_key, rule, reason) "
                                 "SELECT run_id, 'leads', row_key, 'x', 'x' FROM lead_links WHERE row_key = ?", (key,))
        assert faults.audit(wh, faults.TINY_RECORDS)[1] == 1
        with wh.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM quarantine WHERE rule = 'x'")
            conn.exec_driver_sql("DELETE FROM lead_links WHERE row_key = ?", (key,))
        assert faults.audit(wh, faults.TINY_RECORDS)[0] == 1
