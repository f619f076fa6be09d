"""The rules model: YAML validation, decay, tiers and reasons that add up to the score."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from slowburn.ripeness import RipenessConfigError, RulesModel, load_config, parse_config
from slowburn.ripeness.features import lead_attributes, link_touches, touch_features
from slowburn.ripeness.reasons import integerize, reasons_json
from slowburn.ripeness.rules import tier_of

NOW = pd.Timestamp("2026-11-23T00:00:00Z")
DEFAULT = Path(__file__).resolve().parents[2] / "include" / "config" / "ripeness.yaml"


def _doc() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


def _with(path: str, value) -> dict:
    doc = _doc()
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    node[last] = value
    return doc


# ------------------------------------------------------------------------------------------ YAML
def test_default_yaml_is_valid_and_env_var_points_elsewhere(tmp_path, monkeypatch):
    cfg = load_config(DEFAULT)
    assert cfg.tiers.hot == 70 and cfg.engagement.half_life_days == 30
    other = tmp_path / "mine.yaml"
    other.write_text(yaml.safe_dump(_with("engagement.half_life_days", 7)))
    monkeypatch.setenv("SLOWBURN_RIPENESS", str(other))
    assert load_config().engagement.half_life_days == 7
    assert load_config().rules_version != cfg.rules_version  # an edit is a new model version


@pytest.mark.parametrize("path,value,expected", [
    ("fit.lead_source", {"form_fill": 20, "webinar": 5}, r"fit\.lead_source: unknown lead source \['webinar'\]; "
                                                          r"allowed lead sources: form_fill, target_page"),
    ("fit.lead_source", {"form_fill": 5, "target_page": 15}, r"follow the source rank .*target_page=15.0 > form_fill=5.0"),
    ("engagement.touch_points", {"demo_request": 5, "tweet": 1}, r"engagement\.touch_points: unknown touch type "
                                                                 r"\['tweet'\]; allowed touch types: form_fill"),
    ("engagement.half_life_days", 0, r"engagement\.half_life_days: Input should be greater than 0"),
    ("tiers", {"hot": 40, "warm": 45, "cool": 25}, r"tiers: thresholds must satisfy hot > warm > cool"),
    ("negative.email_bounce", 5, r"negative\.email_bounce: Input should be less than or equal to 0"),
    ("predictive.models", ["naive_bayes", "xgboost"], r"predictive\.models: unknown model \['xgboost'\]; "
                                                      r"allowed models: naive_bayes, logistic"),
    ("predictive.calibration", "platt", r"predictive\.calibration\.0: got 'platt'; input should be 'none', "
                                        r"'sigmoid' or 'isotonic'"),
    ("scorecard.min_leads", 10, r"scorecard\.min_leads: Input should be greater than or equal to 50"),
    ("routing.workday", {"start_hour": 9, "end_hour": 17, "days": ["mon", "funday"]},
     r"routing\.workday\.days: unknown day \['funday'\]; allowed days: mon, tue"),
    ("engagement.contact_pattern", {"min": 12, "max": 5, "points": 5}, r"contact_pattern: min \(12\) must be at most"),
    ("fit.title_seniority", [{"level": "x", "points": 1, "pattern": "(unclosed"}], r"title_seniority\.0\.pattern: "
                                                                                    r"not a valid regular expression"),
    ("fit.colour", "red", r"fit\.colour: unknown key"),
])
def test_yaml_errors_name_the_key_and_allowed_values(path, value, expected):
    with pytest.raises(RipenessConfigError, match=expected):
        parse_config(_with(path, value), "ripeness.yaml")


def test_missing_section_and_bad_yaml_are_reported(tmp_path):
    doc = _doc()
    del doc["fit"]
    with pytest.raises(RipenessConfigError, match=r"fit: required key is missing"):
        parse_config(doc)
    bad = tmp_path / "bad.yaml"
    bad.write_text("fit: [unclosed\n")
    with pytest.raises(RipenessConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(RipenessConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------------ scoring
LINKS = pd.DataFrame({"source_system": ["crm", "crm"], "source_id": ["1", "2"], "golden_id": ["g1", "g2"]})


def _golden(**over) -> pd.DataFrame:
    base = {"golden_id": "g1", "lead_source": "form_fill", "title": None, "email_canonical": "a@gmail.com",
            "email_opt_out": False, "last_activity_at": pd.NaT, "country_code": None, "company": None,
            "stage": None, "created_at": NOW - pd.Timedelta(days=60)}
    return pd.DataFrame([{**base, **over}])


def _touches(*events, lead="1") -> pd.DataFrame:
    return pd.DataFrame([{"source_system": "crm", "lead_source_id": lead, "touch_type": t, "campaign": None,
                          "occurred_at": NOW - pd.Timedelta(days=d)} for t, d in events],
                        columns=["source_system", "lead_source_id", "touch_type", "campaign", "occurred_at"])


def _score(golden, touches, cfg=None):
    cfg = cfg or load_config(DEFAULT)
    attrs = lead_attributes(golden, cfg).assign(last_activity_at=golden["last_activity_at"].to_numpy())
    feats = touch_features(link_touches(touches, LINKS, attrs.index), attrs.index, NOW, cfg)
    model = RulesModel(cfg)
    return model.score(attrs, feats, NOW).set_index("golden_id"), model.factor_points(attrs, feats, NOW), feats


def test_engagement_decays_by_half_life():
    cfg = parse_config(_with("engagement.half_life_days", 30))
    g = pd.Index(["g1"])
    fresh = touch_features(link_touches(_touches(("demo_request", 0)), LINKS, g), g, NOW, cfg)["engagement"].iloc[0]
    month = touch_features(link_touches(_touches(("demo_request", 30)), LINKS, g), g, NOW, cfg)["engagement"].iloc[0]
    two = touch_features(link_touches(_touches(("demo_request", 60), ("email_open", 30)), LINKS, g), g, NOW,
                         cfg)["engagement"].iloc[0]
    assert fresh == pytest.approx(25.0)
    assert month == pytest.approx(12.5)
    assert two == pytest.approx(25 / 4 + 1 / 2)


def test_touches_after_the_cutoff_never_count():
    cfg = load_config(DEFAULT)
    g = pd.Index(["g1"])
    linked = link_touches(_touches(("form_fill", 20), ("demo_request", 5)), LINKS, g)
    cut = pd.Series([NOW - pd.Timedelta(days=10)], index=g)
    f = touch_features(linked, g, cut, cfg).iloc[0]
    assert f["touches"] == 1 and not f["demo_requested"] and f["n_form_fill"] == 1
    assert f["engagement"] == pytest.approx(10 * 0.5 ** (10 / 30))


def test_score_fit_engagement_and_reasons_sum_to_the_score():
    golden = _golden(title="VP Sales", email_canonical="a@acme.com", country_code="US", company="Acme")
    scored, points, _ = _score(golden, _touches(("demo_request", 1), ("pricing_page_view", 1), ("form_fill", 2)))
    row = scored.loc["g1"]
    # fit: form fill 20 + VP 12 + corporate 5 + company 2 + US 3 = 42
    # engagement: decayed (capped) 40 + last touch within 7 days 10 + demo 8 + pricing 4 = 62; total 104 -> 100
    assert (row.fit, row.engagement) == (42, 62)
    assert row.score == 100 and row.tier == "hot"
    reasons = json.loads(row.reasons)
    assert sum(r["points"] for r in reasons) == row.score
    assert {"factor": "cap at 100", "points": -4} in reasons
    assert reasons[0] == {"factor": "engagement (decayed)", "points": 40}
    assert [abs(r["points"]) for r in reasons] == sorted((abs(r["points"]) for r in reasons), reverse=True)


def test_negative_signals_floor_at_zero_with_an_explicit_factor():
    golden = _golden(lead_source="purchased_list", email_opt_out=True)
    scored, _, feats = _score(golden, _touches(("email_bounce", 1), ("unsubscribe", 1)))
    row = scored.loc["g1"]
    assert row.score == 0 and row.tier == "cold"
    assert feats.loc["g1", "unsubscribed"] and feats.loc["g1", "bounced"]
    reasons = {r["factor"]: r["points"] for r in json.loads(row.reasons)}
    # purchased list 2, recent activity 10, bounce -20, opted out -15: -23, floored with +23
    assert reasons == {"lead source": 2, "recent activity": 10, "email bounced": -20, "opted out of email": -15,
                       "floor at 0": 23}


@pytest.mark.parametrize("score,tier", [(100, "hot"), (70, "hot"), (69, "warm"), (45, "warm"), (44, "cool"),
                                        (25, "cool"), (24, "cold"), (0, "cold")])
def test_tier_boundaries(score, tier):
    cfg = load_config(DEFAULT)
    assert tier_of(np.array([score]), cfg.tiers.as_tuple())[0] == tier


def test_tier_boundary_through_the_model():
    """Form fill 20 + manager 6 = 26 is cool; a purchased list lead with no title (2) is cold."""
    cool, _, _ = _score(_golden(title="Engineering Manager"), _touches())
    cold, _, _ = _score(_golden(lead_source="purchased_list"), _touches())
    assert (cool.loc["g1", "score"], cool.loc["g1", "tier"]) == (26, "cool")
    assert (cold.loc["g1", "score"], cold.loc["g1", "tier"]) == (2, "cold")


def test_reasons_sum_exactly_on_many_leads():
    rng = np.random.default_rng(3)
    n = 500
    golden = pd.DataFrame({
        "golden_id": [f"g{i}" for i in range(n)],
        "lead_source": rng.choice(["form_fill", "email", "event", "purchased_list", "other"], n),
        "title": rng.choice(["CEO", "VP Marketing", "Sales Manager", "Analyst", None], n),
        "email_canonical": rng.choice(["x@acme.com", "y@gmail.com", None], n),
        "email_opt_out": rng.random(n) < 0.1, "last_activity_at": pd.NaT,
        "country_code": rng.choice(["US", "DE", "JP", None], n), "company": "Acme", "stage": None,
        "created_at": NOW - pd.Timedelta(days=90)})
    links = pd.DataFrame({"source_system": "crm", "source_id": [str(i) for i in range(n)], "golden_id": golden.golden_id})
    k = 3000
    touches = pd.DataFrame({"source_system": "crm", "lead_source_id": rng.integers(0, n, k).astype(str),
                            "touch_type": rng.choice(["form_fill", "demo_request", "email_open", "email_bounce",
                                                      "pricing_page_view", "meeting", "unsubscribe"], k),
                            "campaign": None,
                            "occurred_at": NOW - pd.to_timedelta(rng.uniform(0, 200, k), unit="D")})
    cfg = load_config(DEFAULT)
    attrs = lead_attributes(golden, cfg).assign(last_activity_at=pd.NaT)
    feats = touch_features(link_touches(touches, links, attrs.index), attrs.index, NOW, cfg)
    scored = RulesModel(cfg).score(attrs, feats, NOW)
    sums = [sum(r["points"] for r in json.loads(text)) for text in scored["reasons"]]
    assert sums == scored["score"].tolist()
    assert scored["score"].between(0, 100).all() and scored["score"].nunique() > 20
    assert (scored["fit"] + scored["engagement"] >= scored["score"] - 100).all()


def test_reason_helpers():
    text = reasons_json(["a", "b", "c"], np.array([[3, -7, 0], [0, 0, 0]]))
    assert json.loads(text[0]) == [{"factor": "b", "points": -7}, {"factor": "a", "points": 3}]
    assert json.loads(text[1]) == []
    tenths = reasons_json(["a", "b"], np.array([[125, -5]]), decimals=1)
    assert json.loads(tenths[0]) == [{"factor": "a", "points": 12.5}, {"factor": "b", "points": -0.5}]
    real = np.array([[10.26, 20.37, -3.63], [0.5, 0.5, 0.0]])
    got = integerize(real, np.array([27, 1]))
    assert got.sum(axis=1).tolist() == [27, 1]
    assert np.abs(got - real).max() < 1
