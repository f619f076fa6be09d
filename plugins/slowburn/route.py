"""Routing: hot leads to the sales queue with an owner and a response deadline, the rest to nurture.

The seeds' rule: the firm that responds first wins, so a hot lead gets a deadline of one working
hour; everyone else is nurtured every two to four weeks until they ripen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from slowburn.contracts import OPEN_STATUSES

TERRITORY_OF_COUNTRY = {"US": "NA", "CA": "NA", "MX": "NA"}
EMEA = set("GB DE FR NL BE LU IE ES PT IT AT CH SE NO DK FI PL CZ HU RO GR IL AE SA ZA NG KE EG TR".split())


@dataclass(frozen=True)
class RoutingConfig:
    sla_hours: float = 1.0
    workday_start_hour: int = 9
    workday_end_hour: int = 17
    cadence_days: int = 14
    cold_cadence_days: int = 30


def territory(country_code: pd.Series) -> pd.Series:
    mapped = country_code.map(TERRITORY_OF_COUNTRY)
    mapped = mapped.fillna(country_code.map(lambda c: "EMEA" if c in EMEA else None))
    return mapped.fillna(country_code.map(lambda c: "APAC" if isinstance(c, str) else None)).fillna("NA")


def add_working_hours(start: pd.Timestamp, hours: float, cfg: RoutingConfig) -> pd.Timestamp:
    """start + hours, counting only Monday-Friday between the workday hours (UTC)."""
    remaining = pd.Timedelta(hours=hours)
    t = start
    while True:
        day_start = t.normalize() + pd.Timedelta(hours=cfg.workday_start_hour)
        day_end = t.normalize() + pd.Timedelta(hours=cfg.workday_end_hour)
        if t.weekday() >= 5 or t >= day_end:
            t = t.normalize() + pd.Timedelta(days=1) + pd.Timedelta(hours=cfg.workday_start_hour)
            continue
        t = max(t, day_start)
        if t + remaining <= day_end:
            return t + remaining
        remaining -= day_end - t
        t = day_end


def active_owners(owners: pd.DataFrame) -> pd.DataFrame:
    return owners[owners["active"].fillna(False).astype(bool) & owners["deactivated_at"].isna()]


def assign_owners(leads: pd.DataFrame, owners: pd.DataFrame) -> pd.DataFrame:
    """Keep a lead's owner when that rep is active; otherwise round-robin within the lead's territory.

    Reps take leads in turn until their daily capacity is used; past that the turn continues and the
    lead is marked over_capacity so that a manager sees the overflow instead of it vanishing.
    `leads` needs golden_id, owner_id, country_code and is assigned in its given order.
    """
    active = active_owners(owners)
    keep = leads["owner_id"].isin(active["owner_id"])
    out = pd.DataFrame({"golden_id": leads["golden_id"].to_numpy(), "owner_id": leads["owner_id"].where(keep).to_numpy(),
                        "owner_kept": keep.to_numpy(), "over_capacity": False})
    if active.empty:
        return out
    load = {o: int(keep[leads["owner_id"] == o].sum()) for o in active["owner_id"]}
    capacity = dict(zip(active["owner_id"], active["daily_capacity"].fillna(25).astype(int)))
    rep_territory = active["territory"].astype("string").str.split("-").str[0].fillna("NA")
    pools = {t: list(active["owner_id"][rep_territory == t]) for t in rep_territory.unique()}
    everyone = list(active["owner_id"])
    turn = {t: 0 for t in list(pools) + ["*"]}
    lead_territory = territory(leads["country_code"]).to_numpy()
    owner_col = out["owner_id"].to_numpy(dtype=object, copy=True)
    over = out["over_capacity"].to_numpy(dtype=bool, copy=True)
    for i in np.flatnonzero(~keep.to_numpy()):
        key = lead_territory[i] if lead_territory[i] in pools else "*"
        pool = pools.get(key, everyone)
        pick = None
        for step in range(len(pool)):
            cand = pool[(turn[key] + step) % len(pool)]
            if load[cand] < capacity[cand]:
                pick = cand
                turn[key] = (turn[key] + step + 1) % len(pool)
                break
        if pick is None:
            pick = pool[turn[key] % len(pool)]
            turn[key] = (turn[key] + 1) % len(pool)
            over[i] = True
        load[pick] += 1
        owner_col[i] = pick
    out["owner_id"] = owner_col
    out["over_capacity"] = over
    return out


def segment(scored: pd.DataFrame) -> pd.Series:
    """Nurture segment: buying stage from what the lead touched, then lead source.

    Leads that opted out of email go to a non-email segment: they are never put on an email list.
    """
    stage = np.select(
        [scored["demo_requested"].to_numpy(dtype=bool) | scored["pricing_viewed"].to_numpy(dtype=bool),
         scored["touches"].to_numpy() >= 3],
        ["decision", "consideration"], default="awareness")
    source = scored["lead_source"].fillna("other").astype(str)
    seg = pd.Series(stage, index=scored.index) + "/" + source
    return seg.mask(opted_out_of_email(scored), "no_email/" + source)


def opted_out_of_email(scored: pd.DataFrame) -> pd.Series:
    return scored["email_opt_out"].astype(bool) | scored["unsubscribed"].astype(bool)


def route(golden: pd.DataFrame, scores: pd.DataFrame, owners: pd.DataFrame, now: pd.Timestamp,
          cfg: RoutingConfig = RoutingConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sales_queue, nurture_queue): every open scored lead lands in exactly one of them.

    Closed leads (converted, closed, unqualified) are routed nowhere: they are done, not forgotten.
    """
    df = golden.merge(scores, on="golden_id", how="inner", validate="one_to_one")
    df = df[df["status"].isin(OPEN_STATUSES) | df["status"].isna()]
    hot = df["tier"] == "hot"
    sales = df[hot].sort_values("score", ascending=False, kind="stable")
    assigned = assign_owners(sales, owners)
    respond_by = add_working_hours(now, cfg.sla_hours, cfg)
    sales_queue = pd.DataFrame({
        "golden_id": sales["golden_id"].to_numpy(), "owner_id": assigned["owner_id"].to_numpy(),
        "owner_kept": assigned["owner_kept"].to_numpy(), "over_capacity": assigned["over_capacity"].to_numpy(),
        "score": sales["score"].to_numpy(), "tier": sales["tier"].to_numpy(), "reasons": sales["reasons"].to_numpy(),
        "queued_at": now, "respond_by": respond_by,
    })
    rest = df[~hot]
    cadence = np.where(rest["tier"] == "cold", cfg.cold_cadence_days, cfg.cadence_days)
    last = pd.to_datetime(rest["last_touch_at"], utc=True)
    due = last + pd.to_timedelta(cadence, unit="D")
    next_touch = due.where(due > now, now + pd.Timedelta(days=1)).fillna(now + pd.Timedelta(days=1))
    nurture_queue = pd.DataFrame({
        "golden_id": rest["golden_id"].to_numpy(),
        "segment": segment(rest).to_numpy(),
        "cadence_days": cadence,
        "next_touch_at": next_touch.to_numpy(),
        "touches_so_far": rest["touches"].astype(int).to_numpy(),
        "score": rest["score"].to_numpy(), "tier": rest["tier"].to_numpy(),
        "email_opt_out": opted_out_of_email(rest).to_numpy(),
    })
    return sales_queue, nurture_queue
