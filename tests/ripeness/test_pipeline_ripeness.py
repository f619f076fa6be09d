"""Score and route through the pipeline, two nights in a row: history, fallback, SLA miss, re-runs."""
from __future__ import annotations

import json

import pandas as pd

from conftest import NOW, write_tiny_sources
from slowburn.pipeline import RunContext, run_all


def test_two_nights_keep_history_and_drop_a_missed_sla_to_nurture(tmp_path):
    sources = write_tiny_sources(tmp_path / "src")
    home = tmp_path / "home"
    night1 = RunContext(logical_date=NOW, sources_path=sources, home=home)
    run_all(night1)
    wh = night1.warehouse()
    steps = json.loads((night1.run_dir / "step_counts.json").read_text())
    assert steps["score"]["scorer"] == "rules" and "history too thin" in steps["score"]["fallback_reason"]
    sales1 = wh.read_table("sales_queue")
    bill = wh.read("SELECT golden_id FROM lead_links WHERE source_id = 'L1'").golden_id[0]
    assert sales1.golden_id.tolist() == [bill]  # the demo-requesting VP is the one hot lead
    row = sales1.iloc[0]
    assert row.owner_id == "O2" and row.respond_by.startswith("2026-11-23T10:00")  # Monday 09:00 + 1 working hour
    reasons = json.loads(row.reasons)
    assert sum(r["points"] for r in reasons) == row.score

    night2 = RunContext(logical_date=NOW + pd.Timedelta(days=1), sources_path=sources, home=home)
    run_all(night2)
    steps2 = json.loads((night2.run_dir / "step_counts.json").read_text())
    # Nobody called after it was queued on Monday (the last rep touch was Sunday's meeting): missed.
    assert wh.read_table("sales_queue").empty
    nurture = wh.read_table("nurture_queue").set_index("golden_id")
    assert nurture.loc[bill, "sla_missed"] == 1 and nurture.loc[bill, "missed_owner_id"] == "O2"
    assert nurture.loc[bill, "sla_missed_at"].startswith("2026-11-23T10:00")
    # lead_scores holds each golden lead's current score; score_history follows its ripening with a row
    # when it was first scored and one each night its score or tier moved, never a copy of an unchanged one.
    current = wh.read("SELECT golden_id, score, tier, model_version, fit, engagement FROM lead_scores")
    assert current.golden_id.is_unique and len(current) == len(wh.read_table("golden_leads"))
    assert current.model_version.str.startswith("rules-default-").all()
    assert (current.fit.notna() & current.engagement.notna()).all()
    history = wh.read("SELECT run_id, golden_id, score, tier FROM score_history ORDER BY golden_id, run_id")
    assert set(history.loc[history.run_id == night1.run_id, "golden_id"]) == set(current.golden_id)
    latest = history.groupby("golden_id").last()
    pd.testing.assert_frame_equal(latest[["score", "tier"]], current.set_index("golden_id")[["score", "tier"]]
                                  .loc[latest.index], check_dtype=False)
    assert ((history.groupby("golden_id").score.diff().fillna(1) != 0)
            | history.groupby("golden_id").tier.transform(lambda t: t.ne(t.shift()))).all()
    # Night 2 explained only the leads whose inputs changed; the rest kept their stored reasons, which were
    # not rewritten even where decay alone moved the score (they keep night 1's run_id, reasons_score and
    # reasons_at); shown to a person they gain a time factor and still sum to tonight's score.
    assert steps2["score"]["reasons_explained"] + steps2["score"]["reasons_carried"] == len(current)
    assert steps2["score"]["reasons_carried"] > 0
    assert len(night2.read("lead_reasons")) == steps2["score"]["reasons_explained"]
    first = night1.read("lead_reasons").set_index("golden_id")
    stored = wh.read("SELECT golden_id, run_id, reasons, reasons_score, reasons_at FROM lead_reasons").set_index(
        "golden_id")
    assert set(stored.index) == set(current.golden_id)
    carried = stored.index.difference(night2.read("lead_reasons").golden_id)
    assert len(carried) == steps2["score"]["reasons_carried"]
    assert (stored.loc[carried, "run_id"] == night1.run_id).all()
    assert stored.loc[carried, "reasons"].tolist() == first.loc[carried, "reasons"].tolist()
    assert (stored.loc[carried, "reasons_score"] == first.loc[carried, "reasons_score"]).all()
    from slowburn.ripeness.reasons import TIME_FACTOR, reasons_now
    score2 = current.set_index("golden_id").loc[carried, "score"]
    shown = reasons_now(stored.loc[carried, "reasons"], stored.loc[carried, "reasons_score"], score2,
                        stored.loc[carried, "reasons_at"].str[:10].to_numpy(dtype=object))
    assert [sum(r["points"] for r in json.loads(t)) for t in shown] == score2.tolist()
    moved = (score2 != stored.loc[carried, "reasons_score"]).to_numpy()
    assert [TIME_FACTOR in t for t in shown] == moved.tolist()
    assert moved.sum() == steps2["score"]["reasons_aged"]
    # `slowburn model explain` shows a carried lead's stored reasons made current: they add up to its score.
    from slowburn.ripeness.commands import explain
    lead = carried[0]
    text = explain(night2, lead)
    assert f"lead {lead}: score {score2[lead]} " in text
    assert text.splitlines()[-1 if "rules tier" not in text else -2].strip() == f"{float(score2[lead]):.1f}  = score"

    # Re-running night 2's route step reads the same previous state (saved in its run folder), not the
    # queues night 2 itself just loaded: same result.
    from slowburn.pipeline import run_step
    before = pd.read_parquet(night2.path("nurture_queue"))
    run_step(night2, "route")
    pd.testing.assert_frame_equal(before, pd.read_parquet(night2.path("nurture_queue")))


def test_custom_attributes_and_touch_values_end_to_end(tmp_path):
    """Mapped in a sources file, typed, quarantined when unreadable, merged, stored, and scored."""
    from slowburn.ripeness.synthetic import write_attribute_sample

    sources = write_attribute_sample(tmp_path / "src", n_leads=700, seed=2, now=NOW)
    leads = pd.read_csv(tmp_path / "src" / "leads.csv", dtype="string", keep_default_na=False)
    leads.loc[3, "Total Time Spent on Website"] = "about an hour"
    leads.to_csv(tmp_path / "src" / "leads.csv", index=False)
    ctx = RunContext(logical_date=NOW, sources_path=sources, home=tmp_path / "home")
    run_all(ctx)
    wh = ctx.warehouse()
    bad = wh.read("SELECT * FROM quarantine WHERE entity = 'leads'")
    assert bad[["source_id", "column_name", "value"]].values.tolist() == [
        [leads.loc[3, "Lead Id"], "attributes.time_on_site", "about an hour"]]
    golden = wh.read("SELECT golden_id, source_keys, attributes FROM golden_leads")
    merged = golden[golden.source_keys.str.contains("webform:")].iloc[0]
    crm_id = next(k for k in merged.source_keys.split("|") if k.startswith("crm:")).split(":")[1]
    crm_row = leads.set_index("Lead Id").loc[crm_id]
    web = pd.read_csv(tmp_path / "src" / "webform.csv", dtype="string").set_index("email").loc[crm_row["Email"]]
    attrs = json.loads(merged.attributes)
    # Per key, the most recent source row wins: the web form's newer time on site, the CRM's occupation.
    assert attrs["time_on_site"] == float(web["seconds"])
    assert attrs["industry"] == crm_row["Industry"] and attrs["employees"] == float(crm_row["Employees"])
    assert wh.read("SELECT COUNT(*) AS n FROM touches WHERE value > 0").n[0] > 500
    scoring = json.loads((ctx.run_dir / "scoring.json").read_text())
    assert scoring["rules_model"] == "fitted scorecard"  # ~600 closed leads: enough to learn the points
    factors = {r["factor"] for text in wh.read("SELECT reasons FROM lead_reasons").reasons for r in json.loads(text)}
    assert any(f.startswith("occupation: ") for f in factors) and any(f.startswith("time on site: ") for f in factors)


def test_a_lead_whose_stored_reasons_went_missing_is_explained_again(tmp_path):
    """The load proves every scored lead has stored reasons; a warehouse restored or edited by hand may
    not. The next night explains the leads whose reasons are gone instead of carrying nothing."""
    sources = write_tiny_sources(tmp_path / "src")
    home = tmp_path / "home"
    night1 = RunContext(logical_date=NOW, sources_path=sources, home=home)
    run_all(night1)
    wh = night1.warehouse()
    lost = wh.read("SELECT golden_id FROM lead_reasons ORDER BY golden_id").golden_id.iloc[0]
    with wh.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM lead_reasons WHERE golden_id = '{lost}'")
    night2 = RunContext(logical_date=NOW + pd.Timedelta(days=1), sources_path=sources, home=home)
    run_all(night2)
    assert lost in set(night2.read("lead_reasons").golden_id)
    stored = wh.read("SELECT golden_id FROM lead_reasons").golden_id
    assert set(stored) == set(wh.read("SELECT golden_id FROM lead_scores").golden_id)
