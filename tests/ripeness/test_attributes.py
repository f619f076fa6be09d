"""Custom attributes and touch values: mapped, typed, merged, learnt, and explained exactly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slowburn.contracts import coerce_attributes
from slowburn.dedupe.survivorship import survive_rules
from slowburn.ripeness import load_config, score_leads
from slowburn.ripeness import predictive as P
from slowburn.ripeness.features import lead_attributes, link_touches
from slowburn.ripeness.scorecard import FittedScorecard
from slowburn.ripeness.synthetic import generate, sources_document
from slowburn.sources import attributes_json
from slowburn.sources.config import parse_sources

NOW = pd.Timestamp("2026-11-23T00:00:00Z")


def _attribute_world(n: int, seed: int = 3, attributes: bool = True):
    """Contract-shaped golden leads, links, touches and outcomes from the attribute-driven generator,
    with the attributes JSON built and typed by the same code the pipeline uses."""
    raw = generate(n, seed, NOW)
    leads = raw["leads"]
    crm = parse_sources(sources_document(), Path("."))[0]
    text = attributes_json(leads, crm.attributes)
    typed, problems = coerce_attributes(text, {k: v["type"] for k, v in crm.attributes.items()})
    assert problems.empty
    golden = pd.DataFrame({
        "golden_id": leads["Lead Id"], "lead_source": leads["Lead Origin"], "title": leads["Job Title"],
        "email_canonical": leads["Email"], "country_code": leads["Country"], "company": leads["Company"],
        "stage": "mql", "email_opt_out": False, "last_activity_at": pd.NaT,
        "created_at": pd.to_datetime(leads["Created"], utc=True)})
    if attributes:
        golden["attributes"] = typed
    links = pd.DataFrame({"source_system": "crm", "source_id": leads["Lead Id"], "golden_id": leads["Lead Id"]})
    t = raw["touches"]
    touches = pd.DataFrame({"source_system": "crm", "lead_source_id": t["lead"], "touch_type": t["type"],
                            "occurred_at": pd.to_datetime(t["at"], utc=True), "campaign": None,
                            "value": pd.to_numeric(t["seconds"])})
    o = raw["outcomes"]
    outcomes = o.assign(closed_at=pd.to_datetime(o["closed_at"], utc=True))
    return golden, links, touches, outcomes


@pytest.fixture(scope="module")
def world():
    return _attribute_world(2600)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    golden, links, touches, outcomes = world
    home = tmp_path_factory.mktemp("home")
    scores, info = score_leads(golden, links, touches, outcomes, load_config(), NOW, home=home)
    return scores, info, home


def test_attribute_driven_conversions_are_learnt_and_beat_a_model_blind_to_them(world, trained, tmp_path):
    _, info, _ = trained
    assert info["scorer"] == "predictive"
    # The truth's log-odds use occupation, industry, time on site, company size and the newsletter box.
    assert info["backtest"]["auc"] > 0.74
    golden, links, touches, outcomes = world
    _, blind = score_leads(golden.drop(columns=["attributes"]), links, touches, outcomes, load_config(), NOW,
                           home=tmp_path)
    assert info["backtest"]["auc"] > blind["backtest"]["auc"] + 0.05


def test_reasons_name_the_attribute_values_and_sum_to_the_score(trained):
    scores, _, _ = trained
    for text, score in zip(scores["reasons"].head(300), scores["score"].head(300)):
        reasons = json.loads(text)
        assert sum(r["points"] for r in reasons) == pytest.approx(score, abs=1e-9)
    factors = {r["factor"] for text in scores["reasons"] for r in json.loads(text)}
    assert "occupation: working professional" in factors and "occupation: student" in factors
    assert any(f.startswith("time on site: ") for f in factors)


@pytest.mark.parametrize("kind", ["naive_bayes", "logistic", "lightgbm"])
def test_contributions_are_exact(world, kind):
    """Every model's per-field contributions plus its baseline are exactly its log-odds."""
    golden, links, touches, outcomes = world
    cfg = load_config()
    attrs = lead_attributes(golden, cfg)
    closed = P.closed_leads(outcomes, links)
    ts = P.training_set(closed, attrs, link_touches(touches, links, attrs.index), cfg)
    model = P.MODEL_CLASSES[kind]().fit(ts.X.iloc[:1500], ts.y[:1500])
    X = ts.X.iloc[1500:]
    z = model.decision_function(X)
    np.testing.assert_allclose(model.baseline_ + model.contributions(X).sum(axis=1), z, atol=1e-6)
    assert any(f.name == "attr_occupation" for f in model.fields_)
    if kind == "lightgbm":  # TreeSHAP: the booster's own raw prediction, not just our sum
        np.testing.assert_allclose(z, model.booster_.predict(model._frame(X), raw_score=True), atol=1e-9)


def test_scorecard_beats_random_on_held_out_leads_with_whole_points(world):
    golden, links, touches, outcomes = world
    cfg = load_config()
    attrs = lead_attributes(golden, cfg)
    ts = P.training_set(P.closed_leads(outcomes, links), attrs, link_touches(touches, links, attrs.index), cfg)
    cut = int(len(ts.y) * 0.75)
    card = FittedScorecard.fit(ts.X.iloc[:cut], ts.y[:cut], cfg)
    held_out = card.score(ts.X.iloc[cut:])
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(ts.y[cut:], held_out["score"]) > 0.7
    for text, score in zip(held_out["reasons"], held_out["score"]):
        reasons = json.loads(text)
        assert sum(r["points"] for r in reasons) == score and all(float(r["points"]).is_integer() for r in reasons)
    # A scorecard: the same field value always earns the same points.
    pts = pd.DataFrame(card.points(ts.X), index=ts.X.index)
    j = [f.name for f in card.model.fields_].index("attr_occupation")
    per_value = pts[j].groupby(ts.X["attr_occupation"].fillna("?")).nunique()
    assert (per_value == 1).all()


def test_hand_set_points_score_a_cold_start(world, tmp_path):
    golden, links, touches, outcomes = world
    scores, info = score_leads(golden, links, touches, outcomes.head(100), load_config(), NOW, home=tmp_path)
    assert info["rules_model"] == "hand-set points" and "history too thin for a fitted scorecard" in \
        info["rules_model_reason"]
    assert scores["model_version"].str.startswith("rules-default-").all()


def test_title_text_is_kept_as_a_category_and_source_rank_is_a_feature():
    cfg = load_config()
    golden = pd.DataFrame({"golden_id": ["a", "b", "c"], "lead_source": ["form_fill", "purchased_list", None],
                           "title": ["VP Sales", "Student", None], "email_canonical": None, "created_at": NOW})
    attrs = lead_attributes(golden, cfg)
    assert attrs["title_class"].tolist() == ["vp_director", "student", "none"]
    assert attrs["seniority"].tolist() == ["vp_director", "none", "none"]  # the rules' points are unchanged
    assert attrs["source_rank"].tolist() == [5.0, 1.0, 0.0]


def test_attributes_are_typed_and_unreadable_values_reported():
    text = pd.Series(['{"t": "1.5", "occ": " Student ", "nl": "Yes"}', '{"t": "abc"}', None, "not json"])
    typed, problems = coerce_attributes(text, {"t": "number", "nl": "boolean"})
    assert json.loads(typed[0]) == {"t": 1.5, "occ": "Student", "nl": True}
    assert typed[1:].isna().all()
    assert problems[["index", "column", "value"]].values.tolist() == [[1, "attributes.t", "abc"],
                                                                      [3, "attributes", "not json"]]


def test_survivorship_merges_attributes_per_key_most_recent_wins():
    leads = pd.DataFrame({
        "source_system": ["crm", "web", "crm"], "source_id": ["1", "2", "3"],
        "updated_at": pd.to_datetime(["2026-01-01", "2026-03-01", "2026-02-01"], utc=True),
        "created_at": pd.to_datetime(["2025-01-01", "2026-03-01", "2025-06-01"], utc=True),
        "attributes": ['{"occ":"Student","tos":100.0}', '{"tos":900.0}', None]})
    golden = survive_rules(leads, ["g1", "g1", "g2"]).set_index("golden_id")
    assert json.loads(golden.loc["g1", "attributes"]) == {"occ": "Student", "tos": 900.0}
    assert pd.isna(golden.loc["g2", "attributes"])
