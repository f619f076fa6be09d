"""A night costs what changed: reasons are recomputed only for leads whose score, tier or model
changed, and stored models are reused until they are old, the history has grown, or the config changed."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from slowburn.ripeness import load_config, score_leads
from slowburn.ripeness.reasons import reasons_now
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
    assert night1["reasons"].notna().all()
    # The same night again with its own scores as the previous ones: nothing to explain, nothing changes,
    # and no reasons are handed back (every lead keeps its stored ones).
    previous = night1[["golden_id", "score", "tier", "model_version"]]
    again, info_again = score_leads(golden, links, touches, outcomes.head(history), cfg, NOW, home=tmp_path,
                                    previous=previous)
    assert info_again["reasons_explained"] == 0 and info_again["reasons_carried"] == len(night1)
    assert again["reasons"].isna().all()
    pd.testing.assert_frame_equal(again.drop(columns="reasons"), night1.drop(columns="reasons"))
    g2, l2, t2, o2 = _night2(world)
    full, _ = score_leads(g2, l2, t2, o2.head(history), cfg, NIGHT2, home=tmp_path)
    same = full.merge(previous, on="golden_id", suffixes=("", "_prev"))
    same = same[(same["score"] == same["score_prev"]) & (same["tier"] == same["tier_prev"])
                & (same["model_version"] == same["model_version_prev"])]

    tonight, info = score_leads(g2, l2, t2, o2.head(history), cfg, NIGHT2, home=tmp_path, previous=previous)

    # Every lead's score, tier and probability are tonight's, as a full run computes them.
    pd.testing.assert_frame_equal(tonight.drop(columns="reasons"), full.drop(columns="reasons"))
    keep = tonight["reasons"].isna().to_numpy()
    # Carried: exactly the leads whose score, tier and model are the same (what changed is unknown here).
    assert set(tonight.loc[keep, "golden_id"]) == set(same["golden_id"])
    assert info["reasons_carried"] == keep.sum() > 0 and info["reasons_explained"] == (~keep).sum() > 0
    # Explained: the new lead and the changed ones, with the reasons a full run gives, summing to the score.
    fresh = tonight[~keep]
    assert "g-new" in set(fresh["golden_id"])
    assert fresh["reasons"].tolist() == full.loc[~keep, "reasons"].tolist()
    assert [_sum(t) for t in fresh["reasons"]] == pytest.approx(fresh["score"].tolist(), abs=1e-9)
    # A carried lead's stored reasons (night 1's) explain its score tonight as they are.
    stored = night1.set_index("golden_id").loc[tonight.loc[keep, "golden_id"]]
    current = reasons_now(stored["reasons"].tolist(), stored["score"], tonight.loc[keep, "score"],
                          [f"{NOW:%Y-%m-%d}"] * keep.sum())
    assert current == stored["reasons"].tolist()
    assert [_sum(t) for t in current] == pytest.approx(tonight.loc[keep, "score"].tolist())


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
    """A month later with no new activity, scores decay: the untouched leads are not explained again; their
    stored reasons plus "days passed since …" (reasons_now) sum to tonight's score. The leads whose inputs
    changed are explained afresh, exactly as a full run explains them."""
    from slowburn.ripeness.reasons import TIME_FACTOR

    cfg = _fast(load_config(DEFAULT), "lightgbm", "isotonic")
    golden, links, touches, outcomes = world
    night1, _ = score_leads(golden, links, touches, outcomes, cfg, NOW, home=tmp_path)
    previous = night1[["golden_id", "score", "tier", "model_version"]]
    later = NOW + pd.Timedelta(days=30)
    g2, l2, t2, o2 = _night2(world)
    changed = set(g2["golden_id"].iloc[100:1600:150]) | {"g-new"}
    full, _ = score_leads(g2, l2, t2, o2, cfg, later, home=tmp_path)
    tonight, info = score_leads(g2, l2, t2, o2, cfg, later, home=tmp_path, previous=previous,
                                changed_inputs=changed)
    pd.testing.assert_frame_equal(tonight.drop(columns="reasons"), full.drop(columns="reasons"))
    assert info["reasons_aged"] > 0 and info["reasons_explained"] <= len(changed)
    by_id = tonight.set_index("golden_id")
    carried = by_id[by_id["reasons"].isna()]
    assert not set(carried.index) & changed and len(carried) == info["reasons_carried"]
    first = night1.set_index("golden_id").loc[carried.index]
    current = reasons_now(first["reasons"].tolist(), first["score"], carried["score"],
                          [f"{NOW:%Y-%m-%d}"] * len(carried))
    for text, score in zip(current, carried["score"]):
        assert _sum(text) == pytest.approx(score, abs=0.05)  # every lead's reasons sum to its score
    aged = [i for i, text in enumerate(current) if TIME_FACTOR in text]
    assert len(aged) == info["reasons_aged"] == int((first["score"] != carried["score"]).sum())
    i = aged[0]
    kept = [f for f in json.loads(current[i]) if not f["factor"].startswith(TIME_FACTOR)]
    assert kept == json.loads(first["reasons"].iloc[i])  # the earlier explanation, untouched
    assert f"({NOW:%Y-%m-%d})" in current[i]
    fresh = full.set_index("golden_id")
    for g in changed & set(by_id.index):
        assert by_id.loc[g, "reasons"] == fresh.loc[g, "reasons"]
    # Another month later with nothing new, nothing is explained: the stored reasons are never rewritten.
    again, info_again = score_leads(g2, l2, t2, o2, cfg, later + pd.Timedelta(days=30), home=tmp_path,
                                    previous=tonight[["golden_id", "score", "tier", "model_version"]],
                                    changed_inputs=set())
    assert info_again["reasons_explained"] == 0 and again["reasons"].isna().all()
