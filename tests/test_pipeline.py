"""The pipeline end to end without Airflow: every landed row's fate, idempotence, incrementality."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import EXPECTED_QUARANTINE, NOW, write_tiny_sources
from slowburn.pipeline import RunContext, run_all, run_step, STEPS


def _rows(wh, sql, **params):
    return wh.read(sql, **params)


def test_tiny_run_accounts_for_every_row(run_context):
    results = run_all(run_context)
    wh = run_context.warehouse()
    ledger = wh.read_table("run_ledger")
    assert len(ledger) == 1
    row = ledger.iloc[0]
    assert (row.landed_leads, row.linked_leads, row.quarantined_leads) == (10, 5, 5)
    assert bool(row.invariant_ok)
    q = wh.read_table("quarantine")
    leads_q = q[q.entity == "leads"]
    by_id = leads_q.groupby("source_id")["rule"].apply(set).to_dict()
    for source_id, rule in EXPECTED_QUARANTINE.items():
        assert rule in by_id[source_id], (source_id, by_id.get(source_id))
    # The older copy of L8 is quarantined, the newer one linked.
    l8 = wh.read("SELECT row_key FROM lead_links WHERE source_id = 'L8'")
    assert l8.row_key.tolist() == ["crm:9"]
    assert by_id["L8"] == {"duplicate_source_id"}
    # Bill Smith (gmail dots, +tag) and William Smith (googlemail) are one person.
    links = wh.read_table("lead_links").set_index("source_id")
    assert links.loc["L1", "golden_id"] == links.loc["L2", "golden_id"]
    assert links.loc["L1", "golden_id"] != links.loc["L3", "golden_id"]
    # An unknown touch type is quarantined, not dropped.
    assert q[q.entity == "touches"].rule.tolist() == ["unknown_touch_type"]
    assert results["summarize"]["invariant_ok"]
    assert (run_context.run_dir / "summary.html").read_text().count("<img") >= 1


def test_golden_record_survivorship(run_context):
    run_all(run_context)
    golden = run_context.warehouse().read_table("golden_leads")
    merged = golden[golden.source_count == 2].iloc[0]
    assert merged.first_name == "William"          # most recently updated row wins
    assert merged.owner_id == "O2"
    assert merged.created_at.startswith("2026-10-01")  # earliest sighting
    assert merged.phone_e164 == "+14155550100"
    assert sorted(merged.source_keys.split("|")) == ["salesforce:L1", "salesforce:L2"]
    opted = golden[golden.email == "new@hooli.com"].iloc[0]
    assert opted.email_opt_out == 1


def test_rerun_same_logical_date_replaces_rows(run_context):
    run_all(run_context)
    wh = run_context.warehouse()
    before = {t: len(wh.read_table(t)) for t in ("landed_leads", "lead_links", "quarantine", "golden_leads",
                                                 "lead_scores", "nurture_queue", "sales_queue", "lead_flags")}
    run_all(run_context)
    after = {t: len(wh.read_table(t)) for t in before}
    assert after == before
    assert len(wh.read_table("run_ledger")) == 1


def test_second_night_pulls_only_new_rows(tmp_path):
    sources = write_tiny_sources(tmp_path / "src")
    home = tmp_path / "home"
    csv = sources.parent / "leads.csv"
    # Changed after night 1's data interval: night 1 must leave it for night 2, even on a re-run.
    csv.write_text(csv.read_text() + "L10,Fay,New,fay@newco.com,,Newco,CEO,US,O1,Open,Web,2026-11-23,2026-11-23T12:00:00,0\n")
    night1 = RunContext(logical_date=NOW, sources_path=sources, home=home)
    run_all(night1)
    assert "L10" not in set(night1.warehouse().read_table("landed_leads", night1.run_id).source_id)
    assert night1.read_json("step_counts")["extract"]["deferred_crm"] == 1
    night2 = RunContext(logical_date=NOW + pd.Timedelta(days=1), sources_path=sources, home=home)
    run_all(night2)
    wh = night2.warehouse()
    landed = wh.read_table("landed_leads", night2.run_id)
    assert landed.source_id.tolist() == ["L10"]
    # Re-running night 1 after night 2 would rewind the current state: refused, nothing changed.
    before = {t: wh.read_table(t).sort_values(list(wh.read_table(t).columns)[:3]).reset_index(drop=True)
              for t in ("current_leads", "lead_links", "golden_leads", "sales_queue", "nurture_queue", "run_ledger")}
    from slowburn.warehouse import OlderRunRefused
    with pytest.raises(OlderRunRefused, match="older than run 2026-11-24T000000"):
        run_all(RunContext(logical_date=NOW, sources_path=sources, home=home))
    for table, frame in before.items():
        after = wh.read_table(table).sort_values(list(frame.columns)[:3]).reset_index(drop=True)
        pd.testing.assert_frame_equal(after, frame)
    assert wh.run_lock() is None  # a refused run holds nothing


def test_steps_run_one_by_one_like_airflow(run_context):
    for step in STEPS:
        run_step(run_context, step)
    assert (run_context.run_dir / "summary.json").exists()


def test_missing_mapped_column_fails_clearly_and_loads_nothing(tmp_path):
    sources = write_tiny_sources(tmp_path / "src")
    csv = sources.parent / "leads.csv"
    csv.write_text(csv.read_text().replace("Mail,", "EmailAddress,", 1))
    ctx = RunContext(logical_date=NOW, sources_path=sources, home=tmp_path / "home")
    from slowburn.contracts import ContractError
    with pytest.raises(ContractError, match=r"email <- 'Mail'.*EmailAddress"):
        run_all(ctx)
    assert ctx.warehouse().read_table("run_ledger").empty


def test_sample_sources_end_to_end(tmp_path):
    """The generated sample: every planted invalid row is quarantined and the ledger balances."""
    from slowburn.sample import generate
    manifest = generate(tmp_path / "sample", n_leads=2000, seed=3, now=NOW.to_pydatetime())
    ctx = RunContext(logical_date=NOW, sources_path=manifest["files"]["sources"], home=tmp_path / "home")
    run_all(ctx)
    wh = ctx.warehouse()
    ledger = wh.read_table("run_ledger").iloc[0]
    assert ledger.landed_leads == 2000
    assert ledger.linked_leads + ledger.quarantined_leads == 2000
    truth = pd.read_parquet(manifest["files"]["truth"])
    quarantined = set(wh.read("SELECT DISTINCT source_system || ':' || source_id AS k FROM quarantine "
                              "WHERE entity = 'leads'").k)
    planted = truth[truth.planted_invalid.notna() & truth.duplicate_source_id_of.isna()
                    & (truth.planted_invalid != "duplicate_source_id")]
    missed = set(planted.source_system + ":" + planted.source_id) - quarantined
    assert not missed, f"planted invalid rows that were linked instead of quarantined: {sorted(missed)[:5]}"
    # Exact matching never merges two different people.
    links = wh.read_table("lead_links").merge(truth[["source_system", "source_id", "person_id"]],
                                               on=["source_system", "source_id"])
    people_per_golden = links.groupby("golden_id").person_id.nunique()
    assert people_per_golden.max() == 1


def test_each_extract_starts_a_new_attempt_and_the_ledger_proves_scores_and_queues(run_context):
    run_all(run_context)
    again = RunContext(logical_date=NOW, sources_path=run_context.sources_path, home=run_context.home)
    run_all(again)
    assert (run_context.attempt, again.attempt) == (1, 2)
    assert sorted(p.name for p in run_context.run_root.iterdir()) == ["attempt-1", "attempt-2"]
    row = again.warehouse().read_table("run_ledger").iloc[0]
    assert int(row.attempt) == 2 and row.attempt_token == again.token
    assert row.scored_leads == row.golden_leads == row.queued_leads + row.not_queued_leads
    # Attempt 1's files are not attempt 2's: reading one through the other is refused by name.
    from slowburn.pipeline import AttemptMismatch
    import shutil
    shutil.copy(run_context.path("lead_scores"), again.path("lead_scores"))
    with pytest.raises(AttemptMismatch, match="lead_scores.parquet was not written by attempt 2"):
        run_step(again, "load")


def test_previous_state_from_the_run_folder_equals_the_warehouse(tmp_path):
    """Night 2 reads night 1's state from its attempt folder (fast) or, when the folder is gone, from the
    warehouse (the truth): the warehouse ends up the same either way, and a forged folder is not used."""
    import shutil

    from slowburn.pipeline import previous_state

    sources = write_tiny_sources(tmp_path / "src")
    csv = sources.parent / "leads.csv"
    csv.write_text(csv.read_text() + "L10,Fay,New,fay@newco.com,,Newco,CEO,US,O1,Open,Web,2026-11-23,2026-11-23T12:00:00,0\n")
    homes = [tmp_path / "cached", tmp_path / "warehouse"]
    night1 = RunContext(logical_date=NOW, sources_path=sources, home=homes[0])
    run_all(night1)
    shutil.copytree(homes[0], homes[1])
    shutil.rmtree(homes[1] / "runs")
    nights = [RunContext(logical_date=NOW + pd.Timedelta(days=1), sources_path=sources, home=h) for h in homes]
    # The attempt folder's copy carries what the warehouse does not store (the landed row's hash).
    assert "row_hash" in previous_state(nights[0], "current_leads").columns
    assert "row_hash" not in previous_state(nights[1], "current_leads").columns
    for night in nights:
        run_all(night)
    # The touch features come from night 1's rollup, or from the whole history when its folder is gone.
    assert nights[0].read_json("step_counts")["score"]["touch_rollup"] == f"carried from run {night1.run_id}"
    assert nights[1].read_json("step_counts")["score"]["touch_rollup"] == "built from the whole history"
    tables = ("current_leads", "lead_links", "golden_leads", "lead_scores", "sales_queue", "nurture_queue",
              "lead_flags")
    got = [{t: night.warehouse().read_table(t).drop(columns=["row_digest"]) for t in tables} for night in nights]
    for t in tables:
        order = list(got[0][t].columns)
        pd.testing.assert_frame_equal(got[0][t].sort_values(order).reset_index(drop=True),
                                      got[1][t].sort_values(order).reset_index(drop=True), obj=t)
    # A folder whose token is not the one the ledger recorded is not trusted.
    third = RunContext(logical_date=NOW + pd.Timedelta(days=2), sources_path=sources, home=homes[0])
    info = nights[0].run_dir / "attempt.json"
    info.write_text(info.read_text().replace(nights[0].token, "f" * 32))
    assert "row_hash" not in previous_state(third, "current_leads").columns
