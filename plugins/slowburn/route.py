"""Routing: hot leads to the sales queue with an owner and a response deadline, the rest to nurture.

The seeds' rule: the firm that responds first wins, so a hot lead gets a deadline of one working
hour from its creation or ripening; a lead sales does not reach in time drops to nurture with a flag.
Everyone else is nurtured every two to four weeks until they ripen, then passed back to sales.

`route` reads last night's queues (the warehouse's sales_queue and nurture_queue before tonight's
load replaces them) to carry queue times over, detect missed SLAs and mark pass-backs. Everything is
vectorised; the only loop is the round-robin over the hot leads that need a new owner.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slowburn.contracts import OPEN_STATUSES
from slowburn.arrowkeys import positions

TERRITORY_OF_COUNTRY = {"US": "NA", "CA": "NA", "MX": "NA"}
EMEA = set("GB DE FR NL BE LU IE ES PT IT AT CH SE NO DK FI PL CZ HU RO GR IL AE SA ZA NG KE EG TR".split())
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS

SALES_COLUMNS = ["golden_id", "owner_id", "owner_kept", "over_capacity", "score", "tier", "probability", "reasons",
                 "model_version", "queued_at", "ripened_at", "respond_by", "responded", "pass_back",
                 "pass_back_reason"]
# The golden and score columns routing reads: the step reads only these, and route() drops the rest
# before joining (golden records carry provenance and member lists that would be copied for nothing).
ROUTE_INPUT_COLUMNS = ("golden_id", "status", "owner_id", "country_code", "created_at", "stage", "lead_source",
                       "email_opt_out", "score", "tier", "probability", "reasons", "model_version", "interest",
                       "touches", "last_touch_at", "last_rep_touch_at", "last_marketing_touch_at", "demo_requested",
                       "pricing_viewed", "bounced", "unsubscribed")
NURTURE_COLUMNS = ["golden_id", "segment", "channel", "buying_stage", "interest", "cadence_days", "next_touch_at",
                   "touches_so_far", "email_opt_out", "sla_missed", "sla_missed_at", "missed_owner_id"]


@dataclass(frozen=True)
class RoutingConfig:
    sla_hours: float = 1.0
    workday_start_hour: int = 9
    workday_end_hour: int = 17
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0
    cadence_days: int = 14
    cold_cadence_days: int = 30
    default_daily_capacity: int = 25

    @classmethod
    def from_config(cls, cfg) -> "RoutingConfig":
        """From the ripeness YAML's `routing:` section (a validated RipenessConfig)."""
        r = cfg.routing
        return cls(sla_hours=r.sla_hours, workday_start_hour=r.workday.start_hour,
                   workday_end_hour=r.workday.end_hour,
                   workdays=tuple(WEEKDAY_NAMES.index(d) for d in r.workday.days),
                   cadence_days=r.cadence_days, cold_cadence_days=r.cold_cadence_days,
                   default_daily_capacity=r.default_daily_capacity)


def territory(country_code: pd.Series) -> pd.Series:
    """NA, EMEA or APAC by country; unknown countries go to NA."""
    cc = country_code.astype("string")
    na = cc.isin(list(TERRITORY_OF_COUNTRY)).to_numpy(dtype=bool) | cc.isna().to_numpy(dtype=bool)
    emea = cc.isin(EMEA).to_numpy(dtype=bool)
    return pd.Series(np.where(na, "NA", np.where(emea, "EMEA", "APAC")), index=country_code.index)


# ---------------------------------------------------------------------------------------------- SLA
def _next_working_moment(t: np.ndarray, cfg: RoutingConfig) -> np.ndarray:
    """The first instant at or after t that lies inside working hours (int64 ns, UTC)."""
    start, end = cfg.workday_start_hour * HOUR_NS, cfg.workday_end_hour * HOUR_NS
    workday = np.zeros(7, bool)
    workday[list(cfg.workdays)] = True
    t = t.copy()
    for _ in range(8):  # at most a week of days to skip
        day = np.floor_divide(t, DAY_NS)
        tod = t - day * DAY_NS
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        ok_day = workday[weekday]
        after = ~ok_day | (tod >= end)
        t = np.where(after, (day + 1) * DAY_NS + start, np.where(tod < start, day * DAY_NS + start, t))
        if not after.any():
            break
    return t


def add_working_hours_ns(starts: np.ndarray, hours: float, cfg: RoutingConfig) -> np.ndarray:
    """starts + hours, counting only working hours (configured days, start to end hour, UTC)."""
    if not cfg.workdays:
        raise ValueError("no working days configured")
    span = (cfg.workday_end_hour - cfg.workday_start_hour) * HOUR_NS
    end_of_day = cfg.workday_end_hour * HOUR_NS
    t = _next_working_moment(np.asarray(starts, dtype=np.int64), cfg)
    remaining = np.full(t.shape, int(round(hours * HOUR_NS)), dtype=np.int64)
    for _ in range(10_000):
        day = np.floor_divide(t, DAY_NS)
        left_today = day * DAY_NS + end_of_day - t
        spill = remaining > left_today
        if not spill.any():
            break
        remaining = np.where(spill, remaining - left_today, remaining)
        # Whole working days in one jump would need a calendar; SLAs span a few days, so step by day.
        t = np.where(spill, _next_working_moment(day * DAY_NS + end_of_day, cfg), t)
        if span <= 0:
            raise ValueError("workday_end_hour must be after workday_start_hour")
    return t + remaining


def _working_ns_since_epoch(t: np.ndarray, cfg: RoutingConfig) -> np.ndarray:
    """Working time (ns) from a fixed origin up to each instant: differences give working time between."""
    start, end = cfg.workday_start_hour * HOUR_NS, cfg.workday_end_hour * HOUR_NS
    workday = np.zeros(7, bool)
    workday[list(cfg.workdays)] = True
    before = np.concatenate([[0], np.cumsum(workday)])  # working days among weekdays 0..r-1
    day = np.floor_divide(t, DAY_NS)
    monday_based = day + 3  # 1970-01-01 was a Thursday
    weeks, weekday = np.divmod(monday_based, 7)
    whole_days = weeks * int(workday.sum()) + before[weekday]
    today = np.clip(t - day * DAY_NS - start, 0, end - start) * workday[weekday]
    return whole_days * (end - start) + today


def working_hours_between_ns(starts: np.ndarray, ends: np.ndarray, cfg: RoutingConfig) -> np.ndarray:
    """Working hours from each start to each end (negative when the end comes first), in the same
    calendar as add_working_hours_ns: the inverse the SLA flag uses to say how late a response was."""
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    return (_working_ns_since_epoch(ends, cfg) - _working_ns_since_epoch(starts, cfg)) / HOUR_NS


def add_working_hours(start: pd.Timestamp, hours: float, cfg: RoutingConfig) -> pd.Timestamp:
    """start + hours, counting only working hours: Monday-Friday between the workday hours (UTC) by default."""
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    out = add_working_hours_ns(np.array([ts.value], dtype=np.int64), hours, cfg)[0]
    return pd.Timestamp(int(out), tz="UTC")


def _ns(s) -> np.ndarray:
    return pd.to_datetime(pd.Series(s), utc=True).astype("datetime64[ns, UTC]").to_numpy(
        dtype="datetime64[ns]").view("int64")


def _ts(values: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=np.int64).view("datetime64[ns]")).dt.tz_localize("UTC")


# ---------------------------------------------------------------------------------------------- owners
def active_owners(owners: pd.DataFrame) -> pd.DataFrame:
    return owners[owners["active"].fillna(False).astype(bool) & owners["deactivated_at"].isna()]


def assign_owners(leads: pd.DataFrame, owners: pd.DataFrame, default_capacity: int = 25) -> pd.DataFrame:
    """Keep a lead's owner when that rep is active; otherwise round-robin within the lead's territory.

    `leads` needs golden_id, owner_id, country_code and is assigned in its given order; an optional
    queue_owner_id (the rep the sales queue gave it before) is kept next when that rep is active.
    Reps take leads in turn until their daily capacity is used; past that the turn continues and the
    lead is marked over_capacity so that a manager sees the overflow instead of it vanishing.
    """
    active = active_owners(owners)
    active_ids = set(active["owner_id"])
    owner = leads["owner_id"].astype("string")
    keep = owner.isin(active_ids).to_numpy(dtype=bool)
    chosen = owner.where(keep).astype(object).to_numpy()
    if "queue_owner_id" in leads:
        queue = leads["queue_owner_id"].astype("string")
        carry = ~keep & queue.isin(active_ids).to_numpy(dtype=bool)
        chosen = np.where(carry, queue.astype(object).to_numpy(), chosen)
        keep_any = keep | carry
    else:
        keep_any = keep
    out = pd.DataFrame({"golden_id": leads["golden_id"].to_numpy(), "owner_id": chosen, "owner_kept": keep,
                        "over_capacity": False})
    if active.empty:
        out["owner_id"] = out["owner_id"].where(keep_any, None)
        return out
    held = pd.Series(chosen[keep_any]).value_counts()
    load = {o: int(held.get(o, 0)) for o in active["owner_id"]}
    capacity = dict(zip(active["owner_id"], active["daily_capacity"].fillna(default_capacity).astype(int)))
    rep_territory = active["territory"].astype("string").str.split("-").str[0].fillna("NA")
    pools = {t: list(active["owner_id"][(rep_territory == t).to_numpy()]) for t in rep_territory.unique()}
    everyone = list(active["owner_id"])
    turn = {t: 0 for t in list(pools) + ["*"]}
    home_of = {o: t for t, members in pools.items() for o in members}
    # Reps with room left, per pool: once a pool is full, overflow is assigned without scanning it.
    room = {t: sum(load[o] < capacity[o] for o in members) for t, members in pools.items()}
    room["*"] = sum(room.values())
    lead_territory = territory(leads["country_code"]).to_numpy()
    owner_col = out["owner_id"].to_numpy(dtype=object, copy=True)
    over = out["over_capacity"].to_numpy(dtype=bool, copy=True)
    for i in np.flatnonzero(~keep_any):
        key = lead_territory[i] if lead_territory[i] in pools else "*"
        pool = pools.get(key, everyone)
        pick = None
        if room[key] > 0:
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
        if load[pick] == capacity[pick]:
            room[home_of[pick]] -= 1
            room["*"] -= 1
        owner_col[i] = pick
    out["owner_id"] = owner_col
    out["over_capacity"] = over
    return out


# ---------------------------------------------------------------------------------------------- nurture
def opted_out_of_email(scored: pd.DataFrame) -> pd.Series:
    """Never email these: opted out, unsubscribed, or their address bounces."""
    out = scored["email_opt_out"].fillna(False).astype(bool) | scored["unsubscribed"].fillna(False).astype(bool)
    if "bounced" in scored:
        out = out | scored["bounced"].fillna(False).astype(bool)
    return out


def buying_stage(scored: pd.DataFrame) -> np.ndarray:
    stage = scored["stage"].astype("string") if "stage" in scored else pd.Series(pd.NA, index=scored.index)
    decision = (scored["demo_requested"].fillna(False).to_numpy(dtype=bool)
                | scored["pricing_viewed"].fillna(False).to_numpy(dtype=bool)
                | stage.isin(["sql", "opportunity"]).to_numpy(dtype=bool))
    consideration = (scored["touches"].fillna(0).to_numpy() >= 3) | stage.eq("mql").fillna(False).to_numpy(bool)
    return np.select([decision, consideration], ["decision", "consideration"], default="awareness")


def segment(scored: pd.DataFrame) -> pd.Series:
    """Nurture segment: buying stage / interest / lead source; opted-out leads get no email segment.

    Interest is the campaign or content the lead touched last (see the ripeness YAML's interests).
    """
    source = scored["lead_source"].astype("string").fillna("other")
    interest = (scored["interest"].astype("string").fillna("general") if "interest" in scored
                else pd.Series("general", index=scored.index, dtype="string"))
    stage = pd.Series(buying_stage(scored), index=scored.index, dtype="string")
    seg = stage + "/" + interest + "/" + source
    return seg.mask(opted_out_of_email(scored), "no_email/" + stage + "/" + source).astype(str)


# ---------------------------------------------------------------------------------------------- route
def _top_reasons(reasons: str, n: int = 3) -> str:
    try:
        items = json.loads(reasons)[:n]
    except (TypeError, ValueError):
        return ""
    return ", ".join(f"{r['factor']} {r['points']:+g}" for r in items)


def _previous(frame: pd.DataFrame | None, columns: dict) -> pd.DataFrame:
    """Last night's queue by golden_id with the columns we use (missing ones null: older schemas)."""
    if frame is None or len(frame) == 0:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in columns.items()}, index=pd.Index([], name="golden_id"))
    out = frame.drop_duplicates("golden_id").set_index("golden_id")
    for c, d in columns.items():
        if c not in out:
            out[c] = pd.Series(dtype=d)
    for c, d in columns.items():
        if d == "datetime64[ns, UTC]":
            out[c] = pd.to_datetime(out[c], utc=True)
    return out[list(columns)]


def _used(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in frame.columns if c in ROUTE_INPUT_COLUMNS]]


def _scored(golden: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """golden joined one to one with its scores, in golden's order, by an Arrow lookup (a validated
    pandas merge factorizes the ids of a million leads twice)."""
    golden, scores = _used(golden), _used(scores)
    if set(golden.columns) & set(scores.columns) != {"golden_id"}:  # clashing names: merge's suffixes
        return golden.merge(scores, on="golden_id", how="inner", validate="one_to_one")
    for frame, side in ((golden, "left"), (scores, "right")):
        if frame["golden_id"].duplicated().any():
            raise pd.errors.MergeError(f"Merge keys are not unique in {side} dataset; not a one-to-one merge")
    row = positions(golden["golden_id"], scores["golden_id"])
    found = row >= 0
    return pd.concat([golden[found].reset_index(drop=True),
                      scores.drop(columns="golden_id").iloc[row[found]].reset_index(drop=True)], axis=1)


def _rows_of(frame: pd.DataFrame, ids: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame's row for each id, all missing where it has none; whether it has one), by position."""
    row = positions(ids, pd.Series(frame.index))
    return frame.reset_index(drop=True).reindex(row), row >= 0


def route(golden: pd.DataFrame, scores: pd.DataFrame, owners: pd.DataFrame, now: pd.Timestamp,
          cfg: RoutingConfig = RoutingConfig(), previous_sales: pd.DataFrame | None = None,
          previous_nurture: pd.DataFrame | None = None, previous_run_at: pd.Timestamp | None = None,
          reasons_for=None, previous_scores_of=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sales_queue, nurture_queue): every open scored lead lands in exactly one of them.

    Closed leads (converted, closed, unqualified) are routed nowhere: they are done, not forgotten.
    previous_sales / previous_nurture: last night's queues; previous_run_at: last night's moment
    (a lead created after it is new, and its SLA clock starts at its creation).
    reasons_for(golden_ids, scores): the reasons of the leads that enter the sales queue, the one
    place routing shows them, when `scores` has no reasons column (they are looked up only for those).
    previous_scores_of(golden_ids): the scores those leads had at the previous run, for the reason a
    lead passes back from nurture ("score 52 -> 81"); the nurture queue keeps no score of its own (it
    is in lead_scores, and decay would rewrite every nurture row every night). None: shown as "?".
    """
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    previous_run_at = pd.Timestamp(previous_run_at) if previous_run_at is not None else now - pd.Timedelta(days=1)
    df = _scored(golden, scores)
    df = df[(df["status"].isin(OPEN_STATUSES) | df["status"].isna()).to_numpy(dtype=bool)].reset_index(drop=True)
    for col, default in (("last_rep_touch_at", pd.NaT), ("last_marketing_touch_at", pd.NaT),
                         ("probability", np.nan), ("model_version", None), ("interest", "general"),
                         ("bounced", False), ("created_at", pd.NaT)):
        if col not in df:
            df[col] = default
    prev_s = _previous(previous_sales, {"owner_id": "string", "queued_at": "datetime64[ns, UTC]",
                                        "ripened_at": "datetime64[ns, UTC]", "respond_by": "datetime64[ns, UTC]",
                                        "pass_back": "boolean", "pass_back_reason": "string"})
    prev_n = _previous(previous_nurture, {"sla_missed_at": "datetime64[ns, UTC]", "missed_owner_id": "string",
                                          "next_touch_at": "datetime64[ns, UTC]"})
    gid = df["golden_id"]
    ps, in_sales = _rows_of(prev_s, gid)
    pn, in_nurture = _rows_of(prev_n, gid)
    now_ns = now.value
    last_rep = _ns(df["last_rep_touch_at"])
    nat = np.iinfo(np.int64).min
    hot = (df["tier"] == "hot").to_numpy(dtype=bool)

    # SLA: queued before, deadline passed, and no rep touch since it was queued -> nurture, flagged.
    queued_prev = _ns(ps["queued_at"])
    respond_prev = _ns(ps["respond_by"])
    responded = in_sales & (last_rep != nat) & (last_rep >= queued_prev)
    missed_now = in_sales & (respond_prev != nat) & (respond_prev < now_ns) & ~responded
    # A lead that missed its SLA stays in nurture until it shows new interest after the miss.
    missed_before = _ns(pn["sla_missed_at"])
    last_mkt = _ns(df["last_marketing_touch_at"])
    held = in_nurture & (missed_before != nat) & ~(last_mkt > missed_before)
    to_sales = hot & ~missed_now & ~held
    pass_back = to_sales & in_nurture

    # --- sales queue
    s = df[to_sales].copy()
    s_in_sales = in_sales[to_sales]
    created = _ns(s["created_at"])
    new_lead = (created != nat) & (created > previous_run_at.value)
    ripened = np.where(new_lead, created, now_ns)
    ripened = np.where(s_in_sales, np.where(_ns(ps["ripened_at"])[to_sales] != nat,
                                            _ns(ps["ripened_at"])[to_sales], queued_prev[to_sales]), ripened)
    queued = np.where(s_in_sales & (queued_prev[to_sales] != nat), queued_prev[to_sales], now_ns)
    respond_by = add_working_hours_ns(ripened, cfg.sla_hours, cfg)
    respond_by = np.where(s_in_sales & (respond_prev[to_sales] != nat), respond_prev[to_sales], respond_by)
    s["queue_owner_id"] = ps["owner_id"].to_numpy()[to_sales]
    s["_order"] = np.arange(len(s))
    s = s.assign(_queued=queued, _ripened=ripened, _respond=respond_by)
    s = s.sort_values(["score", "_order"], ascending=[False, True], kind="stable")
    assigned = assign_owners(s, owners, cfg.default_daily_capacity)
    pb = pass_back[to_sales][s["_order"].to_numpy()]
    prev_score = np.full(len(s), np.nan)
    if previous_scores_of is not None and pb.any():
        prev_score[pb] = np.asarray(previous_scores_of(s["golden_id"].to_numpy(dtype=object)[pb]), dtype=float)
    reasons = (np.asarray(reasons_for(s["golden_id"], s["score"]), dtype=object) if reasons_for is not None
               else s["reasons"].to_numpy(dtype=object))
    scores_now = s["score"].to_numpy()
    why = np.full(len(s), None, dtype=object)
    for i in np.flatnonzero(pb):
        before = "?" if np.isnan(prev_score[i]) else f"{int(prev_score[i])}"
        why[i] = (f"ripened in nurture: score {before} -> {int(scores_now[i])} (hot); "
                  f"top reasons: {_top_reasons(reasons[i])}")
    sales_queue = pd.DataFrame({
        "golden_id": s["golden_id"].to_numpy(), "owner_id": assigned["owner_id"].to_numpy(),
        "owner_kept": assigned["owner_kept"].to_numpy(dtype=bool),
        "over_capacity": assigned["over_capacity"].to_numpy(dtype=bool),
        "score": scores_now.astype(np.int64), "tier": s["tier"].to_numpy(), "probability": s["probability"].to_numpy(),
        "reasons": reasons, "model_version": s["model_version"].to_numpy(),
        "queued_at": _ts(s["_queued"].to_numpy()), "ripened_at": _ts(s["_ripened"].to_numpy()),
        "respond_by": _ts(s["_respond"].to_numpy()),
        "responded": responded[to_sales][s["_order"].to_numpy()], "pass_back": pb, "pass_back_reason": why,
    })[SALES_COLUMNS]

    # --- nurture queue
    rest_mask = ~to_sales
    r = df[rest_mask]
    cold = (r["tier"] == "cold").to_numpy()
    cadence = np.where(cold, cfg.cold_cadence_days, cfg.cadence_days).astype(np.int64)
    last = _ns(r["last_marketing_touch_at"])
    last = np.where(last == nat, _ns(r["last_touch_at"]), last)
    due = np.where(last != nat, last + cadence * DAY_NS, nat)
    tomorrow = now_ns + DAY_NS
    next_touch = np.where((due == nat) | (due <= now_ns), tomorrow, due)
    prev_next = _ns(pn["next_touch_at"])[rest_mask]
    # A planned touch stands until a newer touch moves the lead's due date past it. One that came due
    # and was not sent keeps its date: it is overdue since then (email tools send what is due), and
    # the row does not change every night it waits.
    keep_plan = (prev_next != nat) & ((prev_next > now_ns) | (due == nat) | (due <= prev_next))
    next_touch = np.where(keep_plan, prev_next, next_touch)
    missed_at = np.where(missed_now[rest_mask], respond_prev[rest_mask],
                         np.where(held[rest_mask], missed_before[rest_mask], nat))
    missed_owner = np.where(missed_now[rest_mask], ps["owner_id"].to_numpy(dtype=object)[rest_mask],
                            pn["missed_owner_id"].to_numpy(dtype=object)[rest_mask])
    no_email = opted_out_of_email(r).to_numpy(dtype=bool)
    nurture_queue = pd.DataFrame({
        "golden_id": r["golden_id"].to_numpy(),
        "segment": segment(r).to_numpy(),
        "channel": np.where(no_email, "no_email", "email"),
        "buying_stage": buying_stage(r),
        "interest": r["interest"].astype("string").fillna("general").to_numpy(),
        "cadence_days": cadence,
        "next_touch_at": _ts(next_touch),
        "touches_so_far": r["touches"].fillna(0).astype(np.int64).to_numpy(),
        "email_opt_out": no_email,
        "sla_missed": missed_at != nat,
        "sla_missed_at": _ts(missed_at),
        "missed_owner_id": pd.Series(missed_owner).where(missed_at != nat, None).to_numpy(),
    })[NURTURE_COLUMNS]
    return sales_queue, nurture_queue
