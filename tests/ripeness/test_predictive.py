"""The predictive model: fallback on thin history, training on history only, stored and reused models."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slowburn.ripeness import load_config, score_leads
from slowburn.ripeness import predictive as P

NOW = pd.Timestamp("2026-11-23T00:00:00Z")
DEFAULT = Path(__file__).resolve().parents[2] / "include" / "config" / "ripeness.yaml"


def _world(n: int, seed: int = 1):
    """n leads; ripe ones request demos and mostly win. Closed leads also get a burst of touches
    *after* their close that gives the outcome away: a model that used them would be perfect."""
    rng = np.random.default_rng(seed)
    ids = [f"L{i}" for i in range(n)]
    ripe = rng.random(n)
    created = NOW - pd.to_timedelta(rng.uniform(60, 700, n), unit="D")
    closed = created + pd.to_timedelta(rng.uniform(20, 50, n), unit="D")
    won = rng.random(n) < 1 / (1 + np.exp(-(-2.5 + 4 * ripe)))
    golden = pd.DataFrame({
        "golden_id": [f"g{i}" for i in range(n)], "lead_source": rng.choice(["form_fill", "email", "event"], n),
        "title": rng.choice(["CEO", "Analyst", None], n), "email_canonical": "a@acme.com", "email_opt_out": False,
        "last_activity_at": pd.NaT, "country_code": "US", "company": "Acme", "stage": "mql", "status": "working",
        "created_at": created})
    links = pd.DataFrame({"source_system": "crm", "source_id": ids, "golden_id": golden.golden_id})
    rows = []
    k = rng.poisson(1 + 8 * ripe)
    for i in range(n):
        life = (closed[i] - created[i]).total_seconds()
        for _ in range(k[i]):
            kind = "demo_request" if rng.random() < ripe[i] else "email_open"
            rows.append(("crm", ids[i], kind, created[i] + pd.Timedelta(seconds=rng.uniform(0, life))))
        rows.append(("crm", ids[i], "meeting" if won[i] else "unsubscribe", closed[i] + pd.Timedelta(hours=2)))
    touches = pd.DataFrame(rows, columns=["source_system", "lead_source_id", "touch_type", "occurred_at"])
    touches["campaign"] = None
    outcomes = pd.DataFrame({"source_system": "crm", "source_id": ids, "outcome": np.where(won, "won", "lost"),
                             "closed_at": closed})
    return golden, links, touches, outcomes


def test_thin_history_falls_back_to_rules_and_says_so(tmp_path):
    golden, links, touches, outcomes = _world(300)
    cfg = load_config(DEFAULT)
    scores, info = score_leads(golden, links, touches, outcomes.head(200), cfg, NOW, home=tmp_path)
    assert info["scorer"] == "rules" and info["model_version"].startswith("rules-default-")
    assert "history too thin" in info["fallback_reason"] and "200 closed leads (need 1000)" in info["fallback_reason"]
    assert (scores["scorer"] == "rules").all() and (scores["score"] == scores["rules_score"]).all()
    assert scores["probability"].between(0, 1).all()  # Platt-scaled rules score on what history there is
    assert not (tmp_path / "models").exists()
    no_history, info = score_leads(golden, links, touches, None, cfg, NOW, home=tmp_path)
    assert info["history_closed_leads"] == 0 and "0 closed leads" in info["fallback_reason"]
    assert no_history["probability"].tolist() == (no_history["score"] / 100).tolist()


def test_outcomes_after_the_run_moment_are_not_history(tmp_path):
    golden, links, touches, outcomes = _world(1300)
    cfg = load_config(DEFAULT)
    early = NOW - pd.Timedelta(days=400)  # most leads closed after this moment: not history yet
    _, info = score_leads(golden, links, touches, outcomes, cfg, early, home=tmp_path)
    assert info["history_closed_leads"] == int((outcomes["closed_at"] <= early).sum()) < 1000
    assert info["scorer"] == "rules"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    golden, links, touches, outcomes = _world(1600)
    cfg = load_config(DEFAULT)
    scores, info = score_leads(golden, links, touches, outcomes, cfg, NOW, home=home)
    return home, scores, info, (golden, links, touches, outcomes)


def test_deep_history_scores_with_a_stored_backtested_model(trained):
    home, scores, info, _ = trained
    assert info["scorer"] == "predictive" and info["trained"]
    assert info["rules_model"] == "fitted scorecard"
    assert (scores["model_version"] == info["model_version"]).all()
    kind = info["model_version"].split("-")[0]
    assert kind in ("logistic", "naive_bayes", "lightgbm") and info["calibration"] in ("none", "sigmoid", "isotonic")
    registry = json.loads((home / "models" / "registry.json").read_text())
    assert [e["kind"] for e in registry] == [kind] and registry[0]["digest"] == info["fingerprint"]
    folder = Path(registry[0]["path"])
    report = json.loads((folder / "report.json").read_text())
    assert set(report["backtest"]["all_models"]) == {"rules", "scorecard", "naive_bayes", "logistic", "lightgbm"}
    for name in ("naive_bayes", "logistic", "lightgbm"):
        m = report["backtest"]["all_models"][name]
        assert set(m["calibrations"]) == {"none", "sigmoid", "isotonic"}
        # The calibration reported is the one with the lowest calibration error on the test set.
        assert m["calibration_error"] == min(c["calibration_error"] for c in m["calibrations"].values())
    aucs = {k: m["auc"] for k, m in report["backtest"]["all_models"].items() if k not in ("rules", "scorecard")}
    assert kind == P.choose_champion(aucs) and report["backtest"]["metrics"]["auc"] >= max(aucs.values()) - 0.005
    assert report["backtest"]["train"]["closed_to"] <= report["backtest"]["test"]["closed_from"]
    for png in ("calibration.png", "score_distribution.png", "model.joblib"):
        assert (folder / png).stat().st_size > 1000
    # The post-close touches give the outcome away; features cut before the close cannot see them.
    assert 0.6 < report["backtest"]["metrics"]["auc"] < 0.95


def test_predictive_reasons_sum_to_the_score(trained):
    _, scores, _, _ = trained
    assert (scores["score"] == np.floor(100 * scores["probability"] + 0.5)).all()
    labels = tuple(P.FIELD_LABELS + [P.BASELINE_FACTOR, "rounding"])
    for text, score in zip(scores["reasons"], scores["score"]):
        reasons = json.loads(text)
        assert sum(r["points"] for r in reasons) == pytest.approx(score, abs=1e-9)
        assert all(r["factor"].startswith(labels) for r in reasons)
    ranked = json.loads(scores["reasons"].iloc[0])
    assert [abs(r["points"]) for r in ranked] == sorted((abs(r["points"]) for r in ranked), reverse=True)


def test_the_model_is_reused_until_config_features_or_history_change(trained, tmp_path):
    home, scores, info, (golden, links, touches, outcomes) = trained
    cfg = load_config(DEFAULT)
    again, info2 = score_leads(golden, links, touches, outcomes, cfg, NOW, home=home)
    assert not info2["trained"] and info2["model_version"] == info["model_version"]
    pd.testing.assert_frame_equal(again, scores)
    # Too old for the policy, but trained on exactly tonight's rows: retraining would remake it.
    _, later = score_leads(golden, links, touches, outcomes, cfg, NOW + pd.Timedelta(days=30), home=home)
    assert not later["trained"] and later["fingerprint"] == info["fingerprint"]
    assert "days old" in later["retrain_reason"] and "exactly tonight's rows" in later["retrain_reason"]
    # An edit of the fit section (not just the predictive one) retrains.
    edited = cfg.model_copy(update={"fit": cfg.fit.model_copy(update={"corporate_email": 9})})
    _, info3 = score_leads(golden, links, touches, outcomes, edited, NOW, home=home)
    assert info3["trained"] and info3["fingerprint"] != info["fingerprint"]
    assert "config changed" in info3["retrain_reason"]


def test_champion_prefers_simple_models_unless_trees_earn_their_cost():
    assert P.choose_champion({"naive_bayes": 0.70, "logistic": 0.699, "lightgbm": 0.704}) == "logistic"
    assert P.choose_champion({"naive_bayes": 0.71, "logistic": 0.70, "lightgbm": 0.712}) == "naive_bayes"
    assert P.choose_champion({"naive_bayes": 0.70, "logistic": 0.70, "lightgbm": 0.72}) == "lightgbm"
    assert P.choose_champion({"lightgbm": 0.6}) == "lightgbm"


def test_metrics():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    assert P.top_decile_lift(y, np.arange(10)) == pytest.approx(1 / 0.2)
    assert P.calibration_error(y, np.full(10, 0.2)) == pytest.approx((8 * 0.2 + 2 * 0.8) / 10)
    assert P.calibration_error(np.array([0, 1] * 50), np.full(100, 0.5), bins=1) == pytest.approx(0.0)
    assert P.metrics(y, np.linspace(0, 1, 10))["auc"] == pytest.approx(1.0)


def test_the_model_registry_can_live_on_object_storage(s3):
    """Trained once into the bucket (S3 on loopback), then found there and reused by the next run."""
    golden, links, touches, outcomes = _world(1600)
    cfg = load_config(DEFAULT)
    _, info = score_leads(golden, links, touches, outcomes, cfg, NOW, home=s3.location("shared"))
    assert info["scorer"] == "predictive" and info["trained"]
    version = info["model_version"]
    keys = set(s3.keys("shared"))
    assert {"shared/models/registry.json"} | {f"shared/models/{version}/{name}" for name in (
        "model.joblib", "report.json", "calibration.png", "score_distribution.png")} <= keys, sorted(keys)
    registry = json.loads(s3.read("shared/models/registry.json"))
    assert [e["version"] for e in registry] == [version]
    _, again = score_leads(golden, links, touches, outcomes, cfg, NOW, home=s3.location("shared"))
    assert again["scorer"] == "predictive" and not again["trained"] and again["model_version"] == version


def test_tree_explanations_are_the_same_on_any_number_of_threads(monkeypatch):
    golden, links, touches, outcomes = _world(400, seed=3)
    from slowburn.ripeness.features import lead_attributes, link_touches, touch_features

    cfg = load_config(DEFAULT)
    attrs = lead_attributes(golden, cfg)
    X = P.design(attrs, touch_features(link_touches(touches, links), attrs.index, NOW, cfg))
    y = (touches.groupby("lead_source_id")["touch_type"].apply(lambda t: (t == "demo_request").sum()) > 2)
    model = P.LightGBMModel(n_estimators=30, min_child_samples=5, min_count=5).fit(
        X, y.reindex(links["source_id"]).fillna(False).to_numpy(int))
    monkeypatch.setenv("SLOWBURN_SCORE_THREADS", "1")
    one = model._contrib(X)
    monkeypatch.setenv("SLOWBURN_SCORE_THREADS", "2")
    assert np.array_equal(model._contrib(X), one)
    assert np.allclose(model.decision_function(X), one.sum(axis=1))
    monkeypatch.setenv("SLOWBURN_SCORE_THREADS", "two")
    with pytest.raises(ValueError, match="SLOWBURN_SCORE_THREADS='two' is not a whole number"):
        P.prediction_threads()


@functools.lru_cache(maxsize=1)
def _trees_and_design():
    """A LightGBM model on the design, plus a custom number that is missing for a third of the leads."""
    golden, links, touches, outcomes = _world(600, seed=5)
    from slowburn.ripeness.features import lead_attributes, link_touches, touch_features

    cfg = load_config(DEFAULT)
    attrs = lead_attributes(golden, cfg)
    X = P.design(attrs, touch_features(link_touches(touches, links), attrs.index, NOW, cfg))
    rng = np.random.default_rng(5)
    X["attr_budget"] = np.where(rng.random(len(X)) < 0.3, np.nan, rng.normal(0, 50_000, len(X)))
    won = outcomes.set_index("source_id")["outcome"].reindex(links["source_id"]).eq("won").to_numpy(int)
    won = (won | (X["attr_budget"].fillna(0).to_numpy() > 40_000)).astype(int)
    model = P.LightGBMModel(n_estimators=40, min_child_samples=5, min_count=5).fit(X, won)
    return model, X


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_tree_explanations_per_group_are_each_leads_own(data):
    """Each tree explains leads once per group it cannot tell apart; every lead must get its own
    TreeSHAP values (up to the order of additions), also at a threshold, one ulp either side of it, at
    zero and when missing."""
    model, X = _trees_and_design()
    cuts = [np.unique(np.concatenate([np.empty(0)] + [t[i] for t in model._tree_splits() if t.get(i) is not None]))
            for i in range(len(model.fields_))]
    numeric = [i for i, spec in enumerate(model.fields_) if spec.kind != "cat" and len(cuts[i])]
    n = data.draw(st.integers(1, 60))
    # a few leads repeated, so that rows differ only in the fields changed below
    base = X.sample(data.draw(st.integers(1, 4)), random_state=data.draw(st.integers(0, 2**31)))
    rows = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    for index in data.draw(st.lists(st.sampled_from(numeric), min_size=1, max_size=3, unique=True)):
        spec = model.fields_[index]
        threshold = data.draw(st.sampled_from(cuts[index].tolist()))
        edge = [threshold, np.nextafter(threshold, np.inf), np.nextafter(threshold, -np.inf), 0.0, -0.0, 1e-40,
                -1e-40] + ([np.nan] if spec.kind == "anum" else [])
        picks = data.draw(st.lists(st.sampled_from(edge), min_size=n, max_size=n))
        rows[spec.name] = np.asarray(picks, dtype=float)
    own = model.booster_.predict(model._frame(rows), raw_score=True, pred_contrib=True)
    mine = model._contrib(rows)
    np.testing.assert_allclose(mine, own, rtol=0, atol=1e-12)
    assert (mine[:, -1] == model.offset_).all()  # the expected value, added in the same order


_CATEGORY_VALUES = st.one_of(st.sampled_from(["a", "b", "ü", "", "missing", "0"]), st.text(max_size=3),
                             st.none(), st.just(float("nan")), st.just(pd.NA), st.integers(0, 2))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_CATEGORY_VALUES, max_size=30),
       cats=st.lists(st.one_of(st.sampled_from(["a", "b", "ü", "", "0"]), st.integers(0, 2)), unique=True, max_size=5))
def test_category_codes_agree_with_a_categorical(values, cats):
    """_codes' Arrow lookup gives what pandas' Categorical gives, for strings, nulls and mixed values."""
    array = np.array(values + [None], dtype=object)[:-1]  # a 1-d object array, whatever the values are
    if all(isinstance(c, str) for c in cats):
        expected = pd.Categorical(array, categories=cats).codes.astype(np.int64)
    else:  # a categorical of mixed categories: pandas compares them as objects
        expected = pd.Categorical(array, categories=pd.Index(cats, dtype=object)).codes.astype(np.int64)
    expected[expected < 0] = len(cats)
    np.testing.assert_array_equal(P._codes(array, cats), expected)
