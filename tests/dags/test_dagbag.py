"""The DAG folder parses cleanly, fast, and without the pipeline's heavy imports."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]


def test_dagbag_has_no_import_errors():
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    dag = bag.dags["slowburn_nightly"]
    assert elapsed < 10, f"parsing took {elapsed:.1f}s; Airflow's limit is 30s"
    assert [t.task_id for t in dag.topological_sort()] == [
        "extract", "normalise", "validate", "dedupe", "score", "route", "flag", "load", "summarize"]
    assert dag.doc_md and "slowburn" in dag.tags
    assert all(t.retries >= 1 for t in dag.tasks)
    load = dag.get_task("load")
    assert [o.name for o in load.outlets] == ["slowburn_lead_queues"]


def test_parsing_does_not_import_pipeline_dependencies():
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('great_expectations', 'sklearn', 'splink', 'matplotlib', 'slowburn.pipeline') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / "slowburn_nightly.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    heavy = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert heavy == "", f"parsing the DAG imported {heavy}"


def test_core_package_never_imports_airflow():
    offenders = []
    for path in (ROOT / "plugins" / "slowburn").rglob("*.py"):
        if "airflow" in path.relative_to(ROOT / "plugins" / "slowburn").parts[:-1]:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import airflow", "from airflow")):
                offenders.append(f"{path.name}: {stripped}")
    assert offenders == []
