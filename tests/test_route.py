"""Routing: SLA deadlines in working hours, owner assignment, nurture segments and opt-outs."""
from __future__ import annotations

import pandas as pd

from slowburn.route import RoutingConfig, add_working_hours, assign_owners, route

CFG = RoutingConfig(sla_hours=1, workday_start_hour=9, workday_end_hour=17)
UTC = "UTC"


def test_sla_deadline_in_working_hours():
    ts = lambda s: pd.Timestamp(s, tz=UTC)
    assert add_working_hours(ts("2026-11-23 10:15"), 1, CFG) == ts("2026-11-23 11:15")   # Monday
    assert add_working_hours(ts("2026-11-23 16:30"), 1, CFG) == ts("2026-11-24 09:30")   # spills to Tuesday
    assert add_working_hours(ts("2026-11-27 16:45"), 1, CFG) == ts("2026-11-30 09:45")   # Friday -> Monday
    assert add_working_hours(ts("2026-11-28 12:00"), 1, CFG) == ts("2026-11-30 10:00")   # Saturday
    assert add_working_hours(ts("2026-11-23 03:00"), 1, CFG) == ts("2026-11-23 10:00")   # before opening


OWNERS = pd.DataFrame({
    "owner_id": ["E1", "E2", "W1", "X1"], "active": [True, True, True, False],
    "deactivated_at": [pd.NaT, pd.NaT, pd.NaT, pd.Timestamp("2026-01-01", tz=UTC)],
    "territory": ["EMEA", "EMEA", "NA-West", "NA-West"], "daily_capacity": [2, 1, 5, 5],
})


def test_owner_kept_when_active_else_round_robin_in_territory():
    leads = pd.DataFrame({"golden_id": list("abcdef"), "owner_id": ["W1", "X1", None, None, None, None],
                          "country_code": ["US", "US", "DE", "FR", "GB", "DE"]})
    got = assign_owners(leads, OWNERS).set_index("golden_id")
    assert got.loc["a", "owner_id"] == "W1" and got.loc["a", "owner_kept"]
    assert got.loc["b", "owner_id"] == "W1" and not got.loc["b", "owner_kept"]  # X1 left: NA pool
    assert got.loc[["c", "d", "e"], "owner_id"].tolist() == ["E1", "E2", "E1"]
    assert not got.loc[["c", "d", "e"], "over_capacity"].any()
    assert got.loc["f", "over_capacity"]  # EMEA capacity (2 + 1) used up: overflow is marked, not dropped


def _scored(rows):
    base = {"status": "new", "lead_source": "form_fill", "email_opt_out": False, "owner_id": "W1",
            "country_code": "US", "touches": 0, "demo_requested": False, "pricing_viewed": False,
            "unsubscribed": False, "reasons": "[]", "last_touch_at": pd.NaT}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    golden = frame[["golden_id", "status", "lead_source", "email_opt_out", "owner_id", "country_code"]]
    scores = frame[["golden_id", "score", "tier", "touches", "demo_requested", "pricing_viewed", "unsubscribed",
                    "reasons", "last_touch_at"]]
    return golden, scores


def test_route_splits_open_leads_and_excludes_opt_outs_from_email():
    golden, scores = _scored([
        {"golden_id": "hot", "score": 90, "tier": "hot"},
        {"golden_id": "warm", "score": 50, "tier": "warm", "touches": 4, "pricing_viewed": True,
         "last_touch_at": pd.Timestamp("2026-11-20", tz=UTC)},
        {"golden_id": "cold", "score": 5, "tier": "cold", "email_opt_out": True},
        {"golden_id": "done", "score": 95, "tier": "hot", "status": "converted"},
    ])
    now = pd.Timestamp("2026-11-23 10:00", tz=UTC)
    sales, nurture = route(golden, scores, OWNERS, now, CFG)
    assert sales["golden_id"].tolist() == ["hot"]
    assert sales["respond_by"].iloc[0] == pd.Timestamp("2026-11-23 11:00", tz=UTC)
    n = nurture.set_index("golden_id")
    assert sorted(n.index) == ["cold", "warm"]  # converted leads are routed nowhere
    assert n.loc["warm", "segment"] == "decision/form_fill"
    assert n.loc["warm", "cadence_days"] == 14 and n.loc["cold", "cadence_days"] == 30
    assert n.loc["warm", "next_touch_at"] == pd.Timestamp("2026-12-04", tz=UTC)
    assert n.loc["cold", "segment"].startswith("no_email/")
