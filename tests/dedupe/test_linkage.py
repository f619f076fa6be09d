"""Linkage on generated sample data: quality against planted truth, incremental runs, stable ids, model reuse."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import validated_sample
from slowburn.dedupe import cluster_exact, dedupe_leads
from slowburn.dedupe.config import load_config
from slowburn.flags import duplicate_for_credit


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("linkage")
    manifest, leads = validated_sample(tmp, n_leads=4000, seed=21)
    truth = pd.read_parquet(manifest["files"]["truth"])
    person = leads[["row_key"]].merge(truth[["row_key", "person_id"]], on="row_key", how="left")["person_id"]
    return {"tmp": tmp, "leads": leads, "truth": truth, "person": person.to_numpy()}


def pair_scores(golden_id, person):
    df = pd.DataFrame({"g": np.asarray(golden_id, dtype=object), "p": person})

    def pairs(counts):
        return int((counts * (counts - 1) // 2).sum())
    both = pairs(df.groupby(["g", "p"]).size())
    return both / max(pairs(df.groupby("g").size()), 1), both / max(pairs(df.groupby("p").size()), 1)


def test_full_link_quality_and_model_json(sample, tmp_path):
    leads = sample["leads"].assign(run_id="r1")
    res = dedupe_leads(leads, None, load_config(), run_id="r1", model_dir=tmp_path / "models", run_dir=tmp_path)
    assert res.report["mode"] == "splink_trained"
    precision, recall = pair_scores(res.links["golden_id"], sample["person"])
    assert precision >= 0.99 and recall >= 0.95, (precision, recall)
    exact = pair_scores(cluster_exact(leads)["golden_id"], sample["person"])
    assert recall > exact[1] + 0.01, "Splink must find duplicates the exact pre-pass misses"
    raw_email = leads["email"].str.lower().fillna(leads["row_key"])
    assert recall > pair_scores(raw_email, sample["person"])[1] + 0.2
    # Every row gets exactly one link; the Splink pairs carry their probability and model.
    assert len(res.links) == len(leads) and res.links["row_key"].is_unique
    splink = res.links[res.links["match_rule"] == "splink"]
    assert len(splink) > 0 and (splink["match_probability"] >= 0.99).all()
    assert splink["match_model"].str.startswith("splink:").all()
    saved = json.loads((tmp_path / "models" / "model.json").read_text())
    assert {c["output_column_name"] for c in saved["comparisons"]} == {"first_name", "last_name", "email", "phone", "country",
                                                                       "organisation"}
    assert res.model == saved
    # Survivorship provenance names a member of the record for every field.
    merged = res.golden[res.golden["source_count"] > 1].iloc[0]
    prov = json.loads(merged["provenance"])
    assert set(v for v in prov.values() if isinstance(v, str)) <= set(merged["source_keys"].split("|"))


def test_incremental_runs_keep_golden_ids(sample, tmp_path):
    leads = sample["leads"]
    created = pd.to_datetime(leads["created_at"], utc=True)
    cutoff = created.quantile(0.85)
    night1 = leads[created <= cutoff].assign(run_id="r1")
    cfg = load_config()
    first = dedupe_leads(night1, None, cfg, run_id="r1", model_dir=tmp_path / "m", run_dir=tmp_path)
    # Night 2: the new leads, plus five earlier leads whose title changed (re-landed tonight).
    changed = night1.sample(5, random_state=1).assign(title="Changed Title", run_id="r2")
    unchanged = night1.drop(changed.index)
    night2 = pd.concat([unchanged, changed, leads[created > cutoff].assign(run_id="r2")])
    second = dedupe_leads(night2, first.links, cfg, run_id="r2", model_dir=tmp_path / "m", run_dir=tmp_path)
    assert second.report["mode"] == "splink_reused"                  # no drift: the saved model is reused
    assert second.report["existing_rows"] == len(unchanged)         # history is not re-linked
    assert second.report["linked_rows"] == len(night2) - len(unchanged)
    before = first.links.set_index("row_key")["golden_id"]
    after = second.links.set_index("row_key")["golden_id"]
    kept = after.reindex(before.index)
    moved = kept != before
    # Every earlier row keeps its golden id, unless two earlier records merged (and then it says so).
    merged_away = set(second.merges["absorbed"]) if len(second.merges) else set()
    assert set(before[moved]) <= merged_away
    prev = second.links.set_index("row_key")["previous_golden_id"].reindex(before.index)
    assert (prev[moved] == before[moved]).all()
    # New rows of people seen before join their existing golden record.
    person = pd.Series(sample["person"], index=leads["row_key"])
    new_rows = second.links[second.links["run_id"] == "r2"].set_index("row_key")
    old_people = pd.Series(before.index.map(person), index=before.index)
    gid_of_person = pd.Series(before.to_numpy(), index=old_people.to_numpy())
    gid_of_person = gid_of_person[~gid_of_person.index.duplicated()]
    returning = new_rows.index[new_rows.index.map(person).isin(gid_of_person.index)]
    returning = returning.difference(changed["row_key"])
    assert len(returning) >= 20
    hit = (new_rows.loc[returning, "golden_id"].to_numpy()
           == gid_of_person.reindex(returning.map(person)).to_numpy()).mean()
    assert hit >= 0.95, hit
    # The run's result equals a full re-link in quality.
    precision, recall = pair_scores(second.links.set_index("row_key").loc[leads["row_key"], "golden_id"],
                                    sample["person"])
    assert precision >= 0.99 and recall >= 0.95


def test_no_email_column_at_all(sample, tmp_path):
    leads = sample["leads"].drop(columns=["email", "email_canonical", "email_tag", "email_domain"]).assign(run_id="r1")
    res = dedupe_leads(leads, None, load_config(), run_id="r1", model_dir=tmp_path / "m", run_dir=tmp_path)
    assert res.report["mode"] == "splink_trained"
    assert "email" not in {c["output_column_name"] for c in res.model["comparisons"]}
    assert len(res.links) == len(leads)
    precision, recall = pair_scores(res.links["golden_id"], sample["person"])
    assert precision >= 0.98 and recall >= 0.8, (precision, recall)


def test_drift_forces_retraining(sample, tmp_path):
    leads = sample["leads"].assign(run_id="r1")
    cfg = load_config()
    dedupe_leads(leads, None, cfg, run_id="r1", model_dir=tmp_path / "m", run_dir=tmp_path)
    drifted = leads.assign(phone_e164=leads["phone_e164"].where(np.arange(len(leads)) % 3 == 0))
    res = dedupe_leads(drifted, None, cfg, run_id="r1", model_dir=tmp_path / "m", run_dir=tmp_path)
    assert res.report["mode"] == "splink_trained"
    assert "phone_e164" in res.report["drift"]["drifted_columns"]
    assert "drifted" in res.report["training"]["reason"]


def test_duplicate_for_credit_flag_matches_planted_truth(sample, tmp_path):
    leads = sample["leads"].assign(run_id="r1")
    res = dedupe_leads(leads, None, load_config(), run_id="r1", model_dir=tmp_path / "m", run_dir=tmp_path)
    flags = duplicate_for_credit(res.golden)
    truth = sample["truth"]
    links = res.links.merge(truth[["row_key", "person_id", "duplicate_for_credit", "is_duplicate"]], on="row_key")
    # A planted credit row can only be seen when its person's marketing row also made it through validation.
    firsts = set(links.loc[~links["is_duplicate"], "person_id"])
    credit = links[links["duplicate_for_credit"] & links["person_id"].isin(firsts)]
    expected = set(credit["golden_id"])
    got = set(flags["golden_id"])
    assert len(expected) >= 10
    tp = len(expected & got)
    assert tp / len(got) >= 0.95 and tp / len(expected) >= 0.95, (len(got), len(expected), tp)
    row = flags.iloc[0]
    evidence = json.loads(row["evidence"])
    assert evidence["rep_created_lead"].startswith("salesforce:") and "marketing_lead" in evidence
    assert row["suggested_action"].startswith("merge ")


def test_the_splink_model_can_live_on_object_storage(sample, s3, tmp_path):
    """Saved into the bucket (S3 on loopback) by the night that trains it, reused from there the next."""
    leads = sample["leads"].assign(run_id="r1")
    first = dedupe_leads(leads, None, load_config(), run_id="r1", model_dir=s3.location("models/dedupe"),
                         run_dir=tmp_path)
    assert first.report["mode"] == "splink_trained"
    assert s3.keys("models") == ["models/dedupe/model.json", "models/dedupe/training.json"]
    assert json.loads(s3.read("models/dedupe/model.json")) == first.model
    second = dedupe_leads(leads, None, load_config(), run_id="r1", model_dir=s3.location("models/dedupe"),
                          run_dir=tmp_path)
    assert second.report["mode"] == "splink_reused"  # read back from the bucket: there is no local copy


def test_saved_model_scores_tonight_against_blocking_neighbours_only(sample, tmp_path):
    """With a saved model, DuckDB gets tonight's rows and only the earlier rows that share a blocking
    key with one of them, term frequencies still counted over every row: the pairs and their
    probabilities are exactly those of loading every row."""
    from slowburn.dedupe.features import features
    from slowburn.dedupe.linkage import link
    leads = sample["leads"].reset_index(drop=True)
    created = pd.to_datetime(leads["created_at"], utc=True)
    new = (created > created.quantile(0.85)).to_numpy()
    cfg = load_config()
    dedupe_leads(leads[~new].assign(run_id="r1"), None, cfg, run_id="r1", model_dir=tmp_path / "m", run_dir=tmp_path)
    feats = features(leads)
    some = link(feats, new, cfg, model_dir=tmp_path / "m", run_dir=tmp_path)
    every = link(feats, new, cfg, model_dir=tmp_path / "m", run_dir=tmp_path, all_rows=True)
    assert some.mode == every.mode == "splink_reused"
    assert new.sum() < some.report["rows_loaded"] < len(leads)
    assert "rows_loaded" not in every.report
    assert len(some.edges[some.edges["rule"] == "splink"]) > 0
    for mine, theirs in ((some.edges, every.edges), (some.review, every.review)):
        pd.testing.assert_frame_equal(mine.sort_values(["a", "b", "rule"], ignore_index=True),
                                      theirs.sort_values(["a", "b", "rule"], ignore_index=True))
