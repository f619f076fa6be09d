"""A night costs what changed: reasons are recomputed only for leads whose score, tier or model
changed, and stored models are reused until they are old, the history has grown, or the config changed."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from slowburn.ripeness import load_config, score_leads
from test_predictive import DEFAULT, NOW, _world

NIGHT2 = NOW + pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def world():
    return _world(1600, seed=4)


def _fast(cfg, kind: str, calibration: str):
    """One model and one calibration: the policy and the reasons are the same, training is quicker."""
    return cfg.model_copy(update={"predictive": cfg.predictive.model_copy(
        update={"models": (kind,), "calibration": (calibration,)})})


def _night2(world):
    """Tonight's inputs: ten leads requested a demo this morning, and one golden lead is new."""
    golden, links, touches, outcomes = world
    changed = golden["golden_id"].iloc[100:1600:150].tolist()
    source = links.set_index("golden_id").loc[changed, "source_id"].tolist()
    demos = pd.DataFrame({"source_system": "crm", "lead_source_id": source, "touch_type": "demo_request",
                          "occurred_at": NIGHT2 - pd.Timedelta(hours=6), "campaign": None})
    new = golden.iloc[[5]].assign(golden_id="g-new", created_at=NIGHT2 - pd.Timedelta(days=2))
    new_link = pd.DataFrame({"source_system": "crm", "source_id": ["NEW"], "golden_id": ["g-new"]})
    return (pd.concat([golden, new], ignore_index=True), pd.concat([links, new_link], ignore_index=True),
            pd.concat([touches, demos], ignore_index=True), outcomes)


def _sum(text: str) -> float:
    return round(sum(r["points"] for r in json.loads(text)), 6)


@pytest.mark.parametrize("history, expected_version", [
    (0, "rules-default-"),          # hand-set points
    (500, "scorecard-default-"),    # a fitted scorecard scores
    (1600, "lightgbm-"),            # the predictive model; its reasons are TreeSHAP values
])
def test_only_changed_leads_are_explained_and_the_rest_keep_their_reasons(world, tmp_path, history,
                                                                          expected_version):
    cfg = _fast(load_config(DEFAULT), "lightgbm", "isotonic")
    golden, links, touches, outcomes = world
    night1, info1 = score_leads(golden, links, touches, outcomes.head(history), cfg, NOW, home=tmp_path)
    assert night1["model_version"].iloc[0].startswith(expected_version)
    assert info1["reasons_explained"] == len(night1) and info1["reasons_carried"] == 0
    # The same night again with its own scores as the previous ones: nothing to explain, nothing changes.
    again, info_again = score_leads(golden, links, touches, outcomes.head(history), cfg, NOW, home=tmp_path,
                                    previous=night1)
    assert info_again["reasons_explained"] == 0 and info_again["reasons_carried"] == len(night1)
    pd.testing.assert_frame_equal(again, night1)
    # The previous run's rows as the warehouse returns them; one unchanged lead's reasons are marked,
    # so carrying (not recomputing) is visible.
    previous = night1[["golden_id", "score", "tier", "probability", "reasons", "model_version"]].copy()
    previous["reasons"] = previous["reasons"].astype(object)
    g2, l2, t2, o2 = _night2(world)
    full, _ = score_leads(g2, l2, t2, o2.head(history), cfg, NIGHT2, home=tmp_path)
    unchanged = full.merge(previous, on="golden_id", suffixes=("", "_prev"))
    unchanged = unchanged[(unchanged["score"] == unchanged["score_prev"]) & (unchanged["tier"] == unchanged["tier_prev"])
                          & (unchanged["model_version"] == unchanged["model_version_prev"])]
    marked = unchanged["golden_id"].iloc[0]
    at = previous.index[previous["golden_id"] == marked][0]
    previous.loc[at, "reasons"] = json.dumps([{"factor": "marked", "points": int(previous.loc[at, "score"])}])

    tonight, info = score_leads(g2, l2, t2, o2.head(history), cfg, NIGHT2, home=tmp_path, previous=previous)

    # Every lead's score, tier and probability are tonight's, as a full run computes them.
    pd.testing.assert_frame_equal(tonight.drop(columns="reasons"), full.drop(columns="reasons"))
    keep = tonight["golden_id"].isin(unchanged["golden_id"]).to_numpy()
    assert info["reasons_carried"] == keep.sum() > 0 and info["reasons_explained"] == (~keep).sum() > 0
    assert info["reasons_explained"] + info["reasons_carried"] == len(tonight)
    # Carried: exactly the previous run's text (the marked one too).
    prev_reasons = previous.set_index("golden_id")["reasons"]
    assert tonight.loc[keep, "reasons"].tolist() == prev_reasons.reindex(tonight.loc[keep, "golden_id"]).tolist()
    assert json.loads(tonight.set_index("golden_id").loc[marked, "reasons"])[0]["factor"] == "marked"
    # Explained: the new lead and the changed ones, with the reasons a full run gives, summing to the score.
    fresh = tonight[~keep]
    assert "g-new" in set(fresh["golden_id"])
    assert fresh["reasons"].tolist() == full.loc[~keep, "reasons"].tolist()
    assert [_sum(t) for t in fresh["reasons"]] == pytest.approx(fresh["score"].tolist(), abs=1e-9)
    # Every carried lead's reasons still sum to its score tonight.
    assert [_sum(t) for t in tonight.loc[keep, "reasons"]] == pytest.approx(tonight.loc[keep, "score"].tolist())


def test_a_new_model_version_explains_every_lead(world, tmp_path):
    golden, links, touches, outcomes = world
    cfg = load_config(DEFAULT)
    night1, _ = score_leads(golden, links, touches, None, cfg, NOW)
    edited = cfg.model_copy(update={"fit": cfg.fit.model_copy(update={"corporate_email": 6})})
    tonight, info = score_leads(golden, links, touches, None, edited, NOW, previous=night1)
    assert tonight["model_version"].iloc[0] != night1["model_version"].iloc[0]
    assert info["reasons_explained"] == len(tonight) and info["reasons_carried"] == 0
    assert [_sum(t) for t in tonight["reasons"]] == tonight["score"].tolist()


def test_retrained_on_age_outcome_growth_or_config_change_not_on_one_new_outcome(world, tmp_path):
    golden, links, touches, outcomes = world
    cfg = _fast(load_config(DEFAULT), "logistic", "none")
    assert (cfg.retrain.max_age_days, cfg.retrain.min_new_outcomes_fraction) == (7, 0.05)

    def night(day: int, known: int, config=cfg):
        # The first `known` leads' outcomes have arrived; the others are still open.
        return score_leads(golden, links, touches, outcomes.head(known), config, NOW + pd.Timedelta(days=day),
                           home=tmp_path)[1]

    first = night(0, 1500)
    assert first["trained"] and first["scorecard_trained"] and "no stored model" in first["retrain_reason"]
    # One more closed lead a day later: the same models, still named by what they were trained on.
    one = night(1, 1501)
    assert not one["trained"] and not one["scorecard_trained"]
    assert one["model_version"] == first["model_version"] and one["fingerprint"] == first["fingerprint"]
    assert one["retrain_reason"].startswith(f"reused {first['model_version']}: 1.0 days old, 1 new")
    # A changed outcome counts like a new one.
    flipped = outcomes.head(1500).assign(outcome=lambda o: np.where(o.index == 0, "won" if o.outcome[0] == "lost"
                                                                    else "lost", o.outcome))
    _, again = score_leads(golden, links, touches, flipped, cfg, NOW + pd.Timedelta(days=1), home=tmp_path)
    assert not again["trained"] and ", 1 new or changed outcomes" in again["retrain_reason"]
    # Eight days on, one new outcome: too old.
    old = night(8, 1501)
    assert old["trained"] and old["scorecard_trained"] and "8.0 days old" in old["retrain_reason"]
    assert old["fingerprint"] != first["fingerprint"]
    # A day later 99 more outcomes: 6.6% of the 1,501 training rows >= 5%.
    grown = night(9, 1600)
    assert grown["trained"] and "99 new or changed outcomes" in grown["retrain_reason"]
    assert not night(9, 1600)["trained"]  # and that one is reused the same night
    # A config change retrains even on the same day and history.
    edited = cfg.model_copy(update={"engagement": cfg.engagement.model_copy(update={"half_life_days": 20})})
    changed = night(9, 1600, edited)
    assert changed["trained"] and changed["scorecard_trained"] and "config changed" in changed["retrain_reason"]
    # A back-fill of an earlier night never reuses a model that saw later outcomes.
    back = night(-1, 1499)
    assert back["trained"] and "no stored model trained at or before" in back["retrain_reason"]


def test_a_lead_whose_inputs_did_not_change_keeps_its_reasons_plus_a_time_factor(world, tmp_path):
    """A month later with no new activity, scores decay: the untouched leads are not explained again but
    carry their reasons plus "days passed since …", and still sum to the score; the leads whose inputs
    changed are explained afresh, exactly as a full run explains them."""
    from slowburn.ripeness.reasons import TIME_FACTOR

    cfg = _fast(load_config(DEFAULT), "lightgbm", "isotonic")
    golden, links, touches, outcomes = world
    night1, _ = score_leads(golden, links, touches, outcomes, cfg, NOW, home=tmp_path)
    previous = night1.assign(scored_at=NOW)
    later = NOW + pd.Timedelta(days=30)
    g2, l2, t2, o2 = _night2(world)
    changed = set(g2["golden_id"].iloc[100:1600:150]) | {"g-new"}
    full, _ = score_leads(g2, l2, t2, o2, cfg, later, home=tmp_path)
    tonight, info = score_leads(g2, l2, t2, o2, cfg, later, home=tmp_path, previous=previous,
                                changed_inputs=changed)
    pd.testing.assert_frame_equal(tonight.drop(columns="reasons"), full.drop(columns="reasons"))
    assert info["reasons_aged"] > 0 and info["reasons_explained"] <= len(changed)
    for row in tonight.itertuples():
        assert _sum(row.reasons) == pytest.approx(row.score, abs=0.05)  # every lead's reasons sum to its score
    by_id = tonight.set_index("golden_id")
    aged = [g for g in by_id.index if TIME_FACTOR in by_id.loc[g, "reasons"]]
    assert len(aged) == info["reasons_aged"] and not set(aged) & changed
    first = night1.set_index("golden_id")
    g = aged[0]
    kept = [f for f in json.loads(by_id.loc[g, "reasons"]) if not f["factor"].startswith(TIME_FACTOR)]
    assert kept == json.loads(first.loc[g, "reasons"])  # the earlier explanation, untouched
    assert f"({NOW:%Y-%m-%d})" in by_id.loc[g, "reasons"]
    fresh = full.set_index("golden_id")
    for g in changed & set(by_id.index):
        assert by_id.loc[g, "reasons"] == fresh.loc[g, "reasons"]
    # Another night later the time factor is replaced, not stacked, and keeps its date.
    again, _ = score_leads(g2, l2, t2, o2, cfg, later + pd.Timedelta(days=30), home=tmp_path,
                           previous=tonight.assign(scored_at=later), changed_inputs=set())
    text = again.set_index("golden_id").loc[g := aged[0], "reasons"]
    assert text.count(TIME_FACTOR) in (0, 1) and (TIME_FACTOR not in text or f"({NOW:%Y-%m-%d})" in text)
