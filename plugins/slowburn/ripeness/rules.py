"""The first, explainable rules model.

Points are additive and every factor is a named column, so the reasons shown to a rep are exactly
the largest contributions to the score. Lead-generation sources are ranked as the seeds rank them:
form fills, then target-page visits, then email engagement, then event lists, then purchased lists.
"""
from __future__ import annotations

import json

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from slowburn.contracts import REP_TOUCH_TYPES


@dataclass(frozen=True)
class RulesModel:
    version: str = "rules-v1"
    source_points: dict = field(default_factory=lambda: {
        "form_fill": 20, "target_page": 15, "email": 10, "event": 6, "purchased_list": 2,
        "rep_created": 8, "other": 3})
    touch_points: dict = field(default_factory=lambda: {
        "demo_request": 25, "form_fill": 10, "pricing_page_view": 12, "meeting": 15, "email_click": 5,
        "event_attended": 6, "call": 4, "page_view": 3, "rep_email": 2, "email_open": 1})
    engagement_cap: float = 40.0
    half_life_days: float = 30.0
    recency_points: tuple = ((7, 10), (30, 5))  # (within days, points)
    contact_pattern: tuple = (5, 12)  # most sales close on the 5th to 12th contact
    contact_points: float = 5.0
    seniority_points: tuple = ((r"\b(?:chief|ceo|cto|cfo|coo|cmo|founder|owner|president)\b", 15),
                               (r"\b(?:vp|vice president|head|director)\b", 12),
                               (r"\b(?:manager|lead)\b", 6))
    corporate_email_points: float = 5.0
    bounce_points: float = -20.0
    unsubscribe_points: float = -15.0
    competitor_points: float = -40.0
    competitor_domains: tuple = ()
    tiers: tuple = (("hot", 70), ("warm", 45), ("cool", 25), ("cold", 0))
    top_reasons: int = 3


def touch_features(touches: pd.DataFrame, links: pd.DataFrame, model: RulesModel, now: pd.Timestamp
                   ) -> pd.DataFrame:
    """Per golden lead: decayed engagement points, counts, first and last touch."""
    t = touches.merge(links[["source_system", "source_id", "golden_id"]],
                      left_on=["source_system", "lead_source_id"], right_on=["source_system", "source_id"],
                      how="inner")
    if t.empty:
        return pd.DataFrame(columns=["engagement", "touches", "rep_touches", "last_touch_at", "bounced",
                                     "unsubscribed", "demo_requested", "pricing_viewed"]).rename_axis("golden_id")
    age_days = ((now - t["occurred_at"]).dt.total_seconds() / 86400).clip(lower=0).astype(float)
    weight = t["touch_type"].map(model.touch_points).astype(float).fillna(0.0)
    t["decayed"] = weight * np.power(0.5, age_days / model.half_life_days)
    t["is_rep"] = t["touch_type"].isin(REP_TOUCH_TYPES)
    for name, kind in (("bounced", "email_bounce"), ("unsubscribed", "unsubscribe"),
                       ("demo_requested", "demo_request"), ("pricing_viewed", "pricing_page_view")):
        t[name] = t["touch_type"] == kind
    g = t.groupby("golden_id")
    return pd.DataFrame({
        "engagement": g["decayed"].sum(),
        "touches": g.size(),
        "rep_touches": g["is_rep"].sum(),
        "last_touch_at": g["occurred_at"].max(),
        "bounced": g["bounced"].any(),
        "unsubscribed": g["unsubscribed"].any(),
        "demo_requested": g["demo_requested"].any(),
        "pricing_viewed": g["pricing_viewed"].any(),
    })


def score_rules(golden: pd.DataFrame, features: pd.DataFrame, model: RulesModel, now: pd.Timestamp
                ) -> pd.DataFrame:
    """lead_scores rows: score 0-100, tier, reasons (JSON list of {factor, points}) and model version."""
    f = golden.set_index("golden_id").join(features, how="left")
    pts = pd.DataFrame(index=f.index)
    pts["lead source"] = f["lead_source"].map(model.source_points).astype(float).fillna(0.0)
    pts["engagement"] = f["engagement"].astype(float).fillna(0.0).clip(upper=model.engagement_cap)
    last = f["last_touch_at"].combine_first(f["last_activity_at"]) if "last_touch_at" in f else f["last_activity_at"]
    idle = (now - pd.to_datetime(last, utc=True)).dt.total_seconds() / 86400
    recency = pd.Series(0.0, index=f.index)
    for days, points in sorted(model.recency_points, reverse=True):
        recency = recency.mask(idle <= days, float(points))
    pts["recent activity"] = recency
    lo, hi = model.contact_pattern
    contacts = f["touches"].astype(float).fillna(0)
    pts["contact depth"] = np.where((contacts >= lo) & (contacts <= hi), model.contact_points, 0.0)
    title = f["title"].astype("string").str.lower().fillna("")
    seniority = pd.Series(0.0, index=f.index)
    for pattern, points in reversed(model.seniority_points):
        seniority = seniority.mask(title.str.contains(pattern, regex=True), float(points))
    pts["title seniority"] = seniority
    from slowburn.normalize import FREE_MAIL_DOMAINS
    domain = f["email_canonical"].astype("string").str.split("@").str[1]
    pts["corporate email"] = np.where(domain.notna() & ~domain.isin(FREE_MAIL_DOMAINS),
                                      model.corporate_email_points, 0.0)
    pts["email bounced"] = np.where(f["bounced"].fillna(False).astype(bool), model.bounce_points, 0.0)
    pts["opted out of email"] = np.where(f["unsubscribed"].fillna(False).astype(bool) | f["email_opt_out"].astype(bool),
                                   model.unsubscribe_points, 0.0)
    pts["competitor"] = np.where(domain.isin(model.competitor_domains), model.competitor_points, 0.0)
    raw = pts.sum(axis=1)
    score = raw.clip(0, 100).round().astype(int)
    tier = pd.Series("cold", index=f.index)
    for name, threshold in sorted(model.tiers, key=lambda t: t[1]):
        tier = tier.mask(score >= threshold, name)
    out = pd.DataFrame({
        "golden_id": f.index,
        "score": score.to_numpy(),
        "tier": tier.to_numpy(),
        "probability": np.nan,
        "reasons": _reasons(pts, model.top_reasons),
        "model_version": model.version,
        "touches": contacts.astype(int).to_numpy(),
        "rep_touches": f["rep_touches"].fillna(0).astype(int).to_numpy(),
        "last_touch_at": pd.to_datetime(last, utc=True).to_numpy(),
    })
    for flag in ("demo_requested", "pricing_viewed", "bounced", "unsubscribed"):
        out[flag] = f[flag].fillna(False).astype(bool).to_numpy() if flag in f else False
    return out.reset_index(drop=True)


def _reasons(points: pd.DataFrame, top: int) -> list[str]:
    """The `top` factors with the largest absolute points per row, as JSON."""
    values = points.to_numpy()
    names = np.array(points.columns)
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :top]
    out = []
    for row, idx in zip(values, order):
        out.append(json.dumps([{"factor": names[i], "points": round(float(row[i]), 1)}
                               for i in idx if round(float(row[i]), 1) != 0]))
    return out


