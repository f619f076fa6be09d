"""slowburn_writeback parses cleanly, is scheduled on the queue asset, and its operator writes back end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]


def test_writeback_dag_is_triggered_by_the_queue_asset():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["slowburn_writeback"]
    nightly = bag.dags["slowburn_nightly"]
    assert [o.name for o in nightly.get_task("load").outlets] == ["slowburn_lead_queues"]
    assert "slowburn_lead_queues" in str(dag.timetable.asset_condition)
    assert [t.task_id for t in dag.tasks] == ["writeback"]
    assert dag.params["dry_run"] is False and dag.max_active_runs == 1
    assert all(t.retries >= 1 for t in dag.tasks)


def test_parsing_the_dags_imports_neither_clients_nor_pandas():
    code = (
        "import sys, runpy; [runpy.run_path(p) for p in sys.argv[1:]];"
        "heavy = [m for m in ('pandas', 'simple_salesforce', 'slowburn.sources', 'slowburn.pipeline') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / "slowburn_writeback.py"),
                          str(ROOT / "dags" / "slowburn_nightly.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    heavy = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert heavy == "", f"parsing the DAGs imported {heavy}"


def test_operator_writes_back_from_the_warehouse_through_airflow_connections(tmp_path, monkeypatch):
    from fakes.hubspot import FakeHubSpot
    from fakes.mailchimp import FakeMailchimp
    from slowburn.airflow.connectors import SlowburnWritebackOperator
    from slowburn.warehouse import Warehouse

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse(url)
    wh.ensure_schema()
    with FakeHubSpot(token="hs-token-xyz") as hs, FakeMailchimp(token="mc-key-xyz-us1") as mc:
        ids = [hs.add("contacts", {"email": f"p{i}@acme.com"}) for i in range(4)]
        with wh.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO run_ledger (run_id, logical_date, status, landed_leads, linked_leads, quarantined_leads, "
                "golden_leads, landed_touches, quarantined_touches, sales_queue, nurture_queue, lead_flags, "
                "invariant_ok, step_counts) VALUES ('r1', '2026-11-23T00:00:00', 'success', 4, 4, 0, 4, 0, 0, 1, 3, "
                "0, 1, '{}')")
        pd.DataFrame({"run_id": "r1", "golden_id": [f"g{i}" for i in range(4)],
                      "email": [f"p{i}@acme.com" for i in range(4)], "email_opt_out": [False, False, False, True],
                      "source_count": 1, "source_keys": [f"hubspot:{i}" for i in ids]}).to_sql(
            "golden_leads", wh.engine, if_exists="append", index=False)
        pd.DataFrame({"run_id": "r1", "golden_id": ["g0"], "owner_id": ["42"], "owner_kept": [True],
                      "over_capacity": [False], "score": [91], "tier": ["hot"], "reasons": ["[]"],
                      "queued_at": ["2026-11-23T08:00:00"], "respond_by": ["2026-11-23T09:00:00"]}).to_sql(
            "sales_queue", wh.engine, if_exists="append", index=False)
        pd.DataFrame({"run_id": "r1", "golden_id": ["g1", "g2", "g3"], "segment": "awareness/general/web",
                      "cadence_days": 14, "next_touch_at": "2026-12-01T00:00:00", "touches_so_far": 0,
                      "email_opt_out": [False, False, True]}).to_sql(
            "nurture_queue", wh.engine, if_exists="append", index=False)
        pd.DataFrame({"run_id": "r1", "golden_id": ["g0", "g1", "g2", "g3"], "score": [91, 30, 30, 30],
                      "tier": ["hot", "cool", "cool", "cool"], "model_version": "m1", "touches": 0, "rep_touches": 0,
                      "scored_at": "2026-11-23T00:00:00"}).to_sql("lead_scores", wh.engine, if_exists="append",
                                                                 index=False)
        monkeypatch.setenv("AIRFLOW_CONN_SLOWBURN_WAREHOUSE", json.dumps({"conn_type": "sqlite",
                                                                          "host": str(tmp_path / "wh.db")}))
        monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", json.dumps(
            {"conn_type": "http", "host": hs.url, "password": "hs-token-xyz", "extra": {"backoff": 0.005}}))
        monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", json.dumps(
            {"conn_type": "http", "host": mc.api_url, "password": "mc-key-xyz-us1",
             "extra": {"list_id": "aud1", "backoff": 0.005}}))
        monkeypatch.delenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", raising=False)
        monkeypatch.setenv("SLOWBURN_HOME", str(tmp_path / "home"))
        op = SlowburnWritebackOperator(task_id="writeback", dry_run=True)
        dry = op.execute({})
        assert dry["dry_run"] and dry["to_send"] > 0 and not hs.writes and not mc.member_puts
        assert list((tmp_path / "home" / "writeback").glob("writeback_plan_r1.jsonl"))
        result = SlowburnWritebackOperator(task_id="writeback", targets="hubspot,mailchimp").execute({})
        assert result["failed_count"] == 0 and result["sent"] == result["to_send"]
        assert hs.objects["contacts"][ids[0]]["properties"]["slowburn_queue"] == "sales"
        assert hs.objects["contacts"][ids[1]]["properties"]["slowburn_score"] == "30"  # from lead_scores
        assert hs.objects["contacts"][ids[0]]["properties"]["hubspot_owner_id"] == "42"
        assert sorted(e for e, _ in mc.member_puts) == ["p1@acme.com", "p2@acme.com"]  # p3 opted out
        again = SlowburnWritebackOperator(task_id="writeback").execute({})
        assert again["to_send"] == 0
