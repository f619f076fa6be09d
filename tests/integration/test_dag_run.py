"""slowburn_nightly through Airflow's own runner (dag.test) on SQLite metadata and an SQLite warehouse."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_tiny_sources

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, sys, pendulum
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.get_dag("slowburn_nightly")
run = dag.test(logical_date=pendulum.datetime(2026, 11, 23, tz="UTC"))
print("STATE=" + str(run.state))
"""


def test_dag_test_runs_the_pipeline(tmp_path):
    sources = write_tiny_sources(tmp_path / "src")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SLOWBURN_SOURCES": str(sources),
        "SLOWBURN_HOME": str(tmp_path / "home"),
        "SLOWBURN_RETRIES": "0",
        "AIRFLOW_CONN_SLOWBURN_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")}),
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True,
                   timeout=300)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "dags")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert "STATE=success" in out.stdout, (out.stdout[-3000:], out.stderr[-3000:])
    # The warehouse named by the Connection got the run, and the ledger balances.
    from slowburn.warehouse import Warehouse
    ledger = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}").read_table("run_ledger")
    assert ledger.run_id.tolist() == ["2026-11-23T000000"]
    assert ledger.landed_leads[0] == ledger.linked_leads[0] + ledger.quarantined_leads[0] == 10
    # One extract try, so one attempt folder; every task worked in it and the load recorded it.
    [attempt] = (tmp_path / "home" / "runs" / "2026-11-23T000000").glob("attempt-*")
    assert attempt.name == "attempt-1" and ledger.attempt[0] == 1
    summary = json.loads((attempt / "summary.json").read_text())
    assert summary["ledger"]["invariant_ok"] is True
