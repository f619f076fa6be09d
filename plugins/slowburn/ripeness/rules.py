"""The rules model: explainable points declared in the ripeness YAML.

Fit (who the lead is) and engagement (what it did) are scored separately and added, with the
negative signals, into a 0-100 score. Every factor's points are whole numbers, so the reasons add up
to the score exactly; when the total is clipped to 0..100 an explicit "floor at 0" or "cap at 100"
factor says so. Lead sources follow the seeds' rank: form fills, then target-page visits, then email
engagement, then event lists, then purchased lists (the YAML validator enforces the order).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from slowburn.ripeness.config import RipenessConfig, load_config
from slowburn.ripeness.reasons import reasons_json

FIT_FACTORS = ("lead source", "title seniority", "corporate email", "company on record", "target account",
               "country")
ENGAGEMENT_FACTORS = ("engagement (decayed)", "recent activity", "contact depth (5-12)", "demo requested",
                      "pricing page viewed", "buying stage")
NEGATIVE_FACTORS = ("email bounced", "opted out of email", "competitor domain")
ADJUSTMENT_FACTORS = ("floor at 0", "cap at 100")
FACTORS = FIT_FACTORS + ENGAGEMENT_FACTORS + NEGATIVE_FACTORS + ADJUSTMENT_FACTORS


def _half_up(x) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=float) + 0.5).astype(np.int64)


def tier_of(score, tiers) -> np.ndarray:
    """Tier names for scores: tiers is ((name, threshold), ...); at or above a threshold is that tier."""
    score = np.asarray(score, dtype=float)
    out = np.full(score.shape, "cold", dtype=object)
    for name, threshold in sorted(tiers, key=lambda t: t[1]):
        out = np.where(score >= threshold, name, out)
    return out


class RulesModel:
    """Points per factor from a validated RipenessConfig (the YAML)."""

    def __init__(self, cfg: RipenessConfig | None = None):
        self.cfg = cfg or load_config()

    @property
    def version(self) -> str:
        return self.cfg.rules_version

    def factor_points(self, attrs: pd.DataFrame, feats: pd.DataFrame, as_of) -> pd.DataFrame:
        """Whole points per factor (columns FACTORS), one row per lead in attrs' order.

        `as_of` is a Timestamp (scoring now) or a Series by golden_id (the moment features were cut
        off, e.g. the close for training rows; then the CRM's current stage is not used).
        """
        cfg = self.cfg
        f = attrs.join(feats, how="left")
        n = len(f)
        fw, ew = cfg.fit.weight, cfg.engagement.weight
        pts = {}
        pts["lead source"] = fw * f["lead_source"].map(cfg.fit.lead_source).astype(float).fillna(0.0).to_numpy()
        pts["title seniority"] = fw * f["seniority_points"].astype(float).fillna(0.0).to_numpy()
        pts["corporate email"] = fw * np.where(f["corporate_email"].to_numpy(dtype=bool), cfg.fit.corporate_email, 0)
        pts["company on record"] = fw * np.where(f["company_known"].to_numpy(dtype=bool), cfg.fit.company_known, 0)
        pts["target account"] = fw * np.where(f["target_account"].to_numpy(dtype=bool),
                                              cfg.fit.target_accounts.points, 0)
        country = f["country_code"].astype("string")
        pts["country"] = fw * country.map(cfg.fit.countries.points).astype(float).fillna(
            cfg.fit.countries.other).to_numpy()
        eng = cfg.engagement
        pts["engagement (decayed)"] = ew * np.minimum(f["engagement"].astype(float).fillna(0.0).to_numpy(), eng.cap)
        last = pd.to_datetime(f["last_touch_at"], utc=True)
        per_lead = isinstance(as_of, pd.Series)
        if per_lead:
            now = pd.to_datetime(as_of.reindex(f.index), utc=True)
        else:
            now = pd.Timestamp(as_of)
            if "last_activity_at" in f:  # the CRM may know of activity we have no touch for
                crm = pd.to_datetime(f["last_activity_at"], utc=True)
                last = last.combine_first(crm.where(crm <= now))
        idle = ((now - last).dt.total_seconds() / 86400).to_numpy(dtype=float, na_value=np.nan)
        recency = np.zeros(n)
        for window in reversed(eng.recency):  # the narrowest window that holds the last touch wins
            recency = np.where(idle <= window.within_days, window.points, recency)
        pts["recent activity"] = ew * recency
        contacts = f["touches"].fillna(0).to_numpy(dtype=float)
        cp = eng.contact_pattern
        pts["contact depth (5-12)"] = ew * np.where((contacts >= cp.min) & (contacts <= cp.max), cp.points, 0.0)
        bs = eng.buying_stage
        pts["demo requested"] = ew * np.where(f["demo_recent"].fillna(False).to_numpy(dtype=bool), bs.demo_request, 0)
        pts["pricing page viewed"] = ew * np.where(f["pricing_recent"].fillna(False).to_numpy(dtype=bool),
                                                   bs.pricing_page_view, 0)
        stage = f["stage"].astype("string").map(bs.stage).astype(float).fillna(0.0).to_numpy()
        pts["buying stage"] = ew * (np.zeros(n) if per_lead else stage)
        neg = cfg.negative
        pts["email bounced"] = np.where(f["bounced"].fillna(False).to_numpy(dtype=bool), neg.email_bounce, 0)
        opted = f["unsubscribed"].fillna(False).to_numpy(dtype=bool) | f["email_opt_out"].fillna(False).to_numpy(
            dtype=bool)
        pts["opted out of email"] = np.where(opted, neg.unsubscribe, 0)
        pts["competitor domain"] = np.where(f["competitor"].to_numpy(dtype=bool), neg.competitor, 0)
        whole = pd.DataFrame({k: _half_up(v) for k, v in pts.items()}, index=f.index)
        raw = whole.sum(axis=1).to_numpy()
        whole["floor at 0"] = np.where(raw < 0, -raw, 0)
        whole["cap at 100"] = np.where(raw > 100, 100 - raw, 0)
        return whole[list(FACTORS)]

    def score(self, attrs: pd.DataFrame, feats: pd.DataFrame, as_of, reasons: bool = True) -> pd.DataFrame:
        """Per lead: score, tier, fit, engagement, reasons (JSON; None if not asked for) and the version."""
        points = self.factor_points(attrs, feats, as_of)
        score = points.sum(axis=1).to_numpy()
        return pd.DataFrame({
            "golden_id": points.index.to_numpy(),
            "score": score.astype(np.int64),
            "tier": tier_of(score, self.cfg.tiers.as_tuple()),
            "fit": points[list(FIT_FACTORS)].sum(axis=1).to_numpy(),
            "engagement": points[list(ENGAGEMENT_FACTORS)].sum(axis=1).to_numpy(),
            "reasons": reasons_json(list(points.columns), points.to_numpy()) if reasons else None,
            "model_version": self.version,
        })
