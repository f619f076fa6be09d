"""Ripeness: how ready a golden lead is for a sales call, with the reasons that made the score.

`score_leads` is the step's core: the rules model always scores (its fit, engagement and score are
kept on every row); the predictive model takes over score, tier, probability and reasons when the
won/lost history is deep enough, and the result says which one scored and why.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from slowburn.ripeness.config import RipenessConfig, RipenessConfigError, load_config, parse_config
from slowburn.ripeness.features import lead_attributes, link_touches, touch_features
from slowburn.ripeness.rules import FACTORS, RulesModel, tier_of

__all__ = ["RipenessConfig", "RipenessConfigError", "RulesModel", "load_config", "parse_config", "score_leads",
           "lead_attributes", "link_touches", "touch_features", "tier_of", "FACTORS", "SCORE_COLUMNS"]

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
    "golden_id", "score", "tier", "probability", "reasons", "model_version", "scorer", "fit", "engagement",
    "rules_score", "touches", "rep_touches", "last_touch_at", "last_rep_touch_at", "last_marketing_touch_at",
    "demo_requested", "pricing_viewed", "bounced", "unsubscribed", "interest",
]
MIN_CALIBRATION_ROWS = 30


def score_leads(golden: pd.DataFrame, links: pd.DataFrame, touches: pd.DataFrame, outcomes: pd.DataFrame | None,
                cfg: RipenessConfig, as_of: pd.Timestamp, home: str | Path | None = None
                ) -> tuple[pd.DataFrame, dict]:
    """lead_scores rows for every golden lead, and what scored them.

    touches: the whole touch history (source_system, lead_source_id, touch_type, occurred_at[, campaign, value]).
    outcomes: won/lost history (source_system, source_id, outcome, closed_at); None or empty means none.
    home: where models are stored (<home>/models); None keeps the predictive model in memory only.
    """
    from slowburn.ripeness import predictive as P
    from slowburn.ripeness.scorecard import FittedScorecard, scorecard_check

    as_of = pd.Timestamp(as_of)
    clock = _Clock()
    linked = link_touches(touches, links)
    clock("link touches")
    attrs = lead_attributes(golden, cfg)
    clock("lead attributes")
    if "last_activity_at" in golden:
        attrs["last_activity_at"] = pd.to_datetime(golden["last_activity_at"], utc=True).to_numpy()
    feats = touch_features(linked, attrs.index, as_of, cfg)
    clock("touch features")
    outcomes = outcomes if outcomes is not None else pd.DataFrame(
        columns=["source_system", "source_id", "outcome", "closed_at"])
    closed = P.closed_leads(outcomes, links) if len(outcomes) else P.closed_leads(outcomes.head(0), links)
    closed = closed[closed["closed_at"] <= as_of]  # history only: nothing that closed after the run's moment
    ok, message = P.history_check(closed, cfg)
    card_ok, card_message = scorecard_check(closed, cfg)
    ts = P.training_set(closed, attrs, linked, cfg) if len(closed) >= MIN_CALIBRATION_ROWS else None
    X = P.design(attrs, feats) if (ok or card_ok) else None
    clock("training set")
    digest = P.fingerprint(ts, cfg) if ts is not None else None
    # The rules tier always scores (fit, engagement, rules_score): points learnt from history when
    # there is enough, else the hand-set points. Its reasons are kept only when it is the scorer.
    if card_ok:
        card = FittedScorecard.fit(ts.X, ts.y, cfg, digest)
        rules = card.score(X, reasons=not ok).set_index("golden_id")
        rules_history = card.score(ts.X, reasons=False)["score"].to_numpy()
    else:
        rules = RulesModel(cfg).score(attrs, feats, as_of, reasons=not ok).set_index("golden_id")
        rules_history = ts.rules_score if ts is not None else None
    clock("rules model")
    out = rules.assign(rules_score=rules["score"], scorer="rules", probability=np.nan)
    info = {"history_closed_leads": int(len(closed)), "history_conversions": int(closed["won"].sum()),
            "scorer": "rules", "model_version": rules["model_version"].iloc[0] if len(rules) else
            RulesModel(cfg).version, "rules_model": "fitted scorecard" if card_ok else "hand-set points",
            "rules_model_reason": card_message, "fallback_reason": None, "trained": False, "fingerprint": digest}
    if ok:
        folder = P.models_dir(home) if home is not None else None
        model = P.reusable(folder, digest, cfg) if folder is not None else None
        if model is None:
            if folder is None:
                import tempfile
                folder = Path(tempfile.mkdtemp(prefix="slowburn-models-"))
            model = P.train_and_store(ts, cfg, as_of, folder, digest)
            info["trained"] = True
            clock("train and backtest")
        pred = model.score(X)
        clock("predictive model")
        for c in ("score", "tier", "probability", "reasons", "model_version"):
            out[c] = pred[c]
        out["scorer"] = "predictive"
        info.update(scorer="predictive", model_version=model.version, model_kind=model.kind,
                    calibration=model.report.get("calibration"),
                    backtest=model.report.get("backtest", {}).get("metrics"))
    else:
        info["fallback_reason"] = message
        log.warning("score: %s", message)
        out["probability"] = _rules_probability(closed, rules_history, out["rules_score"].to_numpy())
    feats_out = feats.reindex(out.index)
    frame = out.join(feats_out[["touches", "rep_touches", "last_touch_at", "last_rep_touch_at",
                                "last_marketing_touch_at", "demo_requested", "pricing_viewed", "bounced",
                                "unsubscribed", "interest"]])
    frame = frame.reset_index()
    frame["score"] = frame["score"].astype(np.int64)
    frame["probability"] = frame["probability"].astype(float)
    for c in ("fit", "engagement", "rules_score", "touches", "rep_touches"):
        frame[c] = frame[c].astype(np.int64)
    clock("assemble")
    info["seconds"] = clock.laps
    return frame[SCORE_COLUMNS], info


class _Clock:
    def __init__(self):
        import time
        self._now = time.perf_counter
        self._last = self._now()
        self.laps: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        t = self._now()
        self.laps[name] = round(t - self._last, 2)
        self._last = t


def _rules_probability(closed, history_scores, scores) -> np.ndarray:
    """Platt-scaled rules score when there is some history with both outcomes; else score / 100."""
    from slowburn.ripeness import predictive as P

    wins = int(closed["won"].sum()) if len(closed) else 0
    if len(closed) >= MIN_CALIBRATION_ROWS and 5 <= wins <= len(closed) - 5:
        if history_scores is None:
            raise ValueError("history scores are needed to calibrate the rules score")
        return P.RulesCalibration(history_scores, closed["won"].to_numpy(dtype=int)).probability(scores)
    return np.asarray(scores, dtype=float) / 100.0
