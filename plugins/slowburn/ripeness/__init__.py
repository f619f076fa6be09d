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
                cfg: RipenessConfig, as_of: pd.Timestamp, home: str | Path | None = None,
                previous: pd.DataFrame | None = None, changed_inputs=None,
                rollup=None) -> tuple[pd.DataFrame, dict]:
    """lead_scores rows for every golden lead, and what scored them.

    touches: the whole touch history (source_system, lead_source_id, touch_type, occurred_at[, campaign, value]),
    or a function that reads it: with `rollup` (a ripeness.rollup.TouchRollup as of `as_of`, which holds
    tonight's features) it is called only when a model is trained or the rules are calibrated.
    outcomes: won/lost history (source_system, source_id, outcome, closed_at); None or empty means none.
    home: where models are stored (<home>/models); None keeps the learnt models in memory only.
    previous: the previous run's scores (golden_id, score, tier, model_version), or None.
    changed_inputs: golden ids whose record or touches changed since `previous` (None: unknown); the
    others' score moved only with time, and they keep their stored reasons (carry_plan).

    Every lead's score, tier and probability are computed afresh (they decay with time). Reasons
    cost far more (TreeSHAP for the trees), so with `previous` they are computed only for leads that
    are new, whose inputs or model_version changed (or, inputs unknown, whose score or tier changed);
    every other lead's `reasons` is <NA>: it keeps the reasons stored for it, computed by the same
    model, which reasons.reasons_now makes current (a time factor for the days since, if the score
    moved). info says how many were explained and carried. Without `previous` every lead is explained.
    Stored models are reused or retrained by predictive.reuse_policy (the `retrain` config).
    """
    from slowburn.ripeness import predictive as P
    from slowburn.ripeness.scorecard import FittedScorecard, scorecard_check

    as_of = pd.Timestamp(as_of)
    clock = _Clock()
    linked = []

    def linked_touches():
        if not linked:
            linked.append(link_touches(touches() if callable(touches) else touches, links))
            clock("touch history")
        return linked[0]

    attrs = lead_attributes(golden, cfg)
    clock("lead attributes")
    if "last_activity_at" in golden:
        # .array: row for row, kept as datetimes (to_numpy boxes a million Timestamps)
        attrs["last_activity_at"] = pd.to_datetime(golden["last_activity_at"], utc=True).array
    if rollup is not None:
        if rollup.as_of != as_of:
            raise ValueError(f"the touch rollup is as of {rollup.as_of}, the scores as of {as_of}")
        feats = rollup.features(links, attrs.index, cfg)
    else:
        feats = touch_features(linked_touches(), attrs.index, as_of, cfg)
    clock("touch features")
    outcomes = outcomes if outcomes is not None else pd.DataFrame(
        columns=["source_system", "source_id", "outcome", "closed_at"])
    closed = P.closed_leads(outcomes, links) if len(outcomes) else P.closed_leads(outcomes.head(0), links)
    closed = closed[closed["closed_at"] <= as_of]  # history only: nothing that closed after the run's moment
    ok, message = P.history_check(closed, cfg)
    card_ok, card_message = scorecard_check(closed, cfg)
    X = P.design(attrs, feats) if (ok or card_ok) else None
    inputs = P.model_inputs(X, cfg) if X is not None else None
    folder = P.models_dir(home) if home is not None else None
    # Which learnt models can be reused; the training set is built only when one is (re)trained or
    # the rules score is calibrated on history.
    card_entry, card_why = (P.reuse_policy(folder / "scorecard", inputs, closed, as_of, cfg)
                            if card_ok and folder is not None else (None, "no model folder"))
    model_entry, model_why = (P.reuse_policy(folder, inputs, closed, as_of, cfg)
                              if ok and folder is not None else (None, "no model folder"))
    need_rows = ((card_ok and card_entry is None) or (ok and model_entry is None)
                 or (not ok and len(closed) >= MIN_CALIBRATION_ROWS))
    ts = (P.training_set(closed, attrs, linked_touches(), cfg) if need_rows and len(closed) >= MIN_CALIBRATION_ROWS
          else None)
    digest = P.fingerprint(ts, cfg) if ts is not None else None
    clock("design and models")  # the training set too, when a model is (re)trained
    # The rules tier always scores (fit, engagement, rules_score): points learnt from history when
    # there is enough, else the hand-set points. Its reasons are kept only when it is the scorer.
    info = {"history_closed_leads": int(len(closed)), "history_conversions": int(closed["won"].sum()),
            "scorer": "rules", "rules_model": "fitted scorecard" if card_ok else "hand-set points",
            "rules_model_reason": card_message, "fallback_reason": None, "trained": False, "fingerprint": digest,
            "reasons_explained": 0, "reasons_carried": 0}
    if card_ok:
        def fit_card():
            fitted = FittedScorecard.fit(ts.X, ts.y, cfg, digest)
            if folder is not None:
                P.store_model(folder / "scorecard", fitted, {
                    "version": fitted.version, "kind": "scorecard", "digest": digest, "inputs": inputs,
                    "feature_spec": P.FEATURE_SPEC, "trained_at": str(as_of)}, ts)
            return fitted

        card, info["scorecard_trained"], info["scorecard_retrain_reason"], card_digest = _learnt(
            folder and folder / "scorecard", card_entry, card_why, digest, cfg.tiers.as_tuple(), cfg, fit_card,
            "scorecard")

        def rules_scores(at=slice(None), reasons=True):
            return card.score(X.iloc[at], reasons=reasons).set_index("golden_id")
    else:
        hand = RulesModel(cfg)

        def rules_scores(at=slice(None), reasons=True):
            return hand.score(attrs.iloc[at], feats, as_of, reasons=reasons).set_index("golden_id")
    if ok:
        rules = rules_scores(reasons=False)
    else:
        rules = _with_reasons(rules_scores, previous, info, changed_inputs)
        if card_ok:
            info["fingerprint"] = card_digest  # what the scoring scorecard was trained on
    clock("rules model")
    info["model_version"] = rules["model_version"].iloc[0] if len(rules) else RulesModel(cfg).version
    out = rules.assign(rules_score=rules["score"], scorer="rules", probability=np.nan)
    if ok:
        if folder is None:
            import tempfile
            folder = Path(tempfile.mkdtemp(prefix="slowburn-models-"))
        model, info["trained"], info["retrain_reason"], info["fingerprint"] = _learnt(
            folder, model_entry, model_why, digest, cfg.predictive.tiers.as_tuple(), cfg,
            lambda: P.train_and_store(ts, cfg, as_of, folder, digest, inputs), "predictive model")
        if info["trained"]:
            clock("train and backtest")
        pred = _with_reasons(lambda at=slice(None), reasons=True: model.score(X.iloc[at], reasons=reasons),
                             previous, info, changed_inputs)
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
        rules_history = None
        if ts is not None:
            rules_history = (card.score(ts.X, reasons=False)["score"].to_numpy() if card_ok else ts.rules_score)
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


def _learnt(folder, entry, why, digest, tiers, cfg, train, what):
    """A learnt model for tonight: the stored one the policy allows, else the stored one trained on
    exactly tonight's rows (retraining would remake it), else train() (which stores it).
    Returns (model, trained, why, the fingerprint of what it was trained on)."""
    from slowburn.ripeness import predictive as P

    model = P.load_model(folder, entry, cfg, tiers) if entry is not None else None
    if model is None and digest is not None and folder is not None:
        same = P.entry_with_digest(folder, digest)
        model = P.load_model(folder, same, cfg, tiers) if same is not None else None
        if model is not None:
            entry, why = same, f"{why}; but it was trained on exactly tonight's rows: reused {same['version']}"
    if model is not None:
        log.info("score: %s %s", what, why)
        return model, False, why, entry.get("digest")
    log.info("score: %s retrained: %s", what, why)
    return train(), True, why, digest


def _with_reasons(scores, previous, info, changed_inputs=None) -> pd.DataFrame:
    """Scores for every lead, reasons computed only where carry_plan says so (all without `previous`);
    a carried lead's reasons are <NA>: it keeps the ones stored for it (lead_reasons).

    scores(at, reasons) scores the leads at positions `at` (a slice: all). Explained leads take the
    score columns of their explained run too, so their reasons sum to exactly those.
    """
    import pyarrow as pa

    from slowburn.arrowkeys import strings
    from slowburn.ripeness.reasons import carry_plan

    if previous is None:
        out = scores()
        info.update(reasons_explained=len(out), reasons_carried=0)
        return out
    out = scores(reasons=False)
    unchanged = None if changed_inputs is None else ~out.index.isin(changed_inputs)
    explained, aged = carry_plan(out.index, out["score"], out["tier"], out["model_version"], previous, unchanged)
    fresh = scores(explained) if len(explained) else out.iloc[:0].assign(reasons=pd.Series(dtype="string"))
    for col in fresh.columns.drop("reasons"):
        values = out[col].to_numpy(copy=True)
        values[explained] = fresh[col].to_numpy()
        out[col] = values
    take = np.full(len(out), -1, dtype=np.int64)
    take[explained] = np.arange(len(explained))
    texts = strings(fresh["reasons"]).take(pa.array(take, mask=take < 0))
    out["reasons"] = pd.Series(pd.arrays.ArrowStringArray(texts), index=out.index, dtype="string")
    info.update(reasons_explained=int(len(explained)), reasons_carried=int(len(out) - len(explained)),
                reasons_aged=int(aged.sum()))
    return out


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
