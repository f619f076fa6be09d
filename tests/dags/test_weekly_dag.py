"""The weekly review DAG parses, stays light, and its task writes the review for its logical date."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import NOW, write_tiny_sources

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "slowburn_weekly_review.py"


def test_weekly_dag_parses_with_a_weekly_schedule():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["slowburn_weekly_review"]
    assert [t.task_id for t in dag.tasks] == ["weekly_review"]
    assert "slowburn" in dag.tags and dag.doc_md and all(t.retries >= 1 for t in dag.tasks)
    assert getattr(dag.timetable, "expression", None) == "0 6 * * 1" or dag.timetable.summary == "0 6 * * 1"


def test_parsing_does_not_import_the_report():
    code = ("import sys, runpy; runpy.run_path(sys.argv[1]); print(','.join(m for m in "
            "('pandas', 'matplotlib', 'slowburn.report.review', 'slowburn.warehouse') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(DAG_FILE)], capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])


def test_task_writes_the_review(tmp_path, monkeypatch):
    from slowburn.pipeline import RunContext, run_all

    home = tmp_path / "home"
    ctx = RunContext(logical_date=NOW, sources_path=write_tiny_sources(tmp_path / "src"), home=home)
    run_all(ctx)
    monkeypatch.setenv("SLOWBURN_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_SLOWBURN_WAREHOUSE", f'{{"conn_type": "sqlite", "host": "{home / "warehouse.db"}"}}')
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAG_FILE)).dags["slowburn_weekly_review"]
    when = NOW + pd.Timedelta(hours=6)
    result = dag.get_task("weekly_review").python_callable(logical_date=when)
    # Monday 06:00 after the Monday 00:00 nightly run: the week reviewed is the one that just ended.
    assert result["week"] == "2026-W47" and result["latest_run"] == ctx.run_id
    assert Path(result["paths"]["html"]).is_file() and result["assigned_leads"] >= 3
