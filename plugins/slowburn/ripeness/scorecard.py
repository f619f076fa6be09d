"""The rules model learnt from history: a points scorecard, for when there is won/lost history.

Hand-set points (include/config/ripeness.yaml) are a guess; once a few hundred leads have closed,
slowburn learns the points instead. Every field is one-hot encoded (numbers and counts in bins), a
regularised logistic regression is fitted on won vs lost, and each field value's points are its
log-odds term (relative to the average closed lead) times a fixed scale: 50 points is the average
closed lead, and one standard deviation of the fitted log-odds is 12 points, so about the top 5% of
closed leads reach 70 (hot). A lead's score is 50 plus its fields' whole points, clipped to 0..100,
and the reasons list exactly those points.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slowburn.ripeness.config import RipenessConfig
from slowburn.ripeness.reasons import reasons_json
from slowburn.ripeness.rules import _half_up, tier_of

BASELINE_POINTS = 50
POINTS_PER_SD = 12.0
WHO_FIELDS = ("lead_source", "source_rank", "title", "country", "corporate_email")


def scorecard_check(closed: pd.DataFrame, cfg: RipenessConfig) -> tuple[bool, str]:
    sc = cfg.scorecard
    n, wins = len(closed), int(closed["won"].sum()) if len(closed) else 0
    if not sc.enabled:
        return False, "scorecard disabled in the ripeness config; the hand-set points score"
    if n < sc.min_leads or wins < sc.min_conversions or n - wins < sc.min_conversions:
        return False, (f"history too thin for a fitted scorecard: {n} closed leads (need {sc.min_leads}), "
                       f"{wins} won and {n - wins} lost (need {sc.min_conversions} of each); "
                       f"the hand-set points score")
    return True, f"scorecard fitted on {n} closed leads, {wins} won"


@dataclass
class FittedScorecard:
    model: object            # a binned LogisticModel
    scale: float             # points per unit of log-odds
    tiers: tuple
    version: str

    @classmethod
    def fit(cls, X: pd.DataFrame, y: np.ndarray, cfg: RipenessConfig, digest: str = "") -> "FittedScorecard":
        from slowburn.ripeness.predictive import LogisticModel

        model = LogisticModel(C=cfg.scorecard.C, binned=True).fit(X, y)
        sd = float(np.std(model.decision_function(X))) or 1.0
        version = f"scorecard-{cfg.name}-{digest or hashlib.sha1(str(model.offset_).encode()).hexdigest()[:8]}"
        return cls(model=model, scale=POINTS_PER_SD / sd, tiers=cfg.tiers.as_tuple(), version=version)

    def points(self, X: pd.DataFrame) -> np.ndarray:
        """Whole points per field (n x fields): the same points for the same field value, always."""
        return _half_up(self.scale * self.model.contributions(X))

    def score(self, X: pd.DataFrame, reasons: bool = True) -> pd.DataFrame:
        """Per lead: score, tier, fit (who) and engagement (what) points, reasons and the version."""
        pts = self.points(X)
        raw = BASELINE_POINTS + pts.sum(axis=1)
        floor = np.where(raw < 0, -raw, 0)
        cap = np.where(raw > 100, 100 - raw, 0)
        score = raw + floor + cap
        who = np.array([f.name in WHO_FIELDS or f.name.startswith("attr_") for f in self.model.fields_])
        out = pd.DataFrame({
            "golden_id": X.index.to_numpy(), "score": score.astype(np.int64),
            "tier": tier_of(score, self.tiers), "fit": pts[:, who].sum(axis=1),
            "engagement": pts[:, ~who].sum(axis=1), "reasons": None, "model_version": self.version,
        })
        if reasons:
            vocab = self.model.vocabulary() + ["floor at 0", "cap at 100"]
            n = len(X)
            names = np.column_stack([np.zeros(n, np.int64), self.model.value_words(X),
                                     np.full(n, len(vocab) - 2), np.full(n, len(vocab) - 1)])
            matrix = np.column_stack([np.full(n, BASELINE_POINTS), pts, floor, cap])
            out["reasons"] = reasons_json(vocab, matrix, name_codes=names)
        return out
