"""Routing: SLA deadlines in working hours, owners, nurture segments, opt-outs, SLA misses and pass-back."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hypothesis import given, settings, strategies as st

from slowburn.route import (RoutingConfig, add_working_hours, add_working_hours_ns, assign_owners, route,
                            working_hours_between_ns)

CFG = RoutingConfig(sla_hours=1, workday_start_hour=9, workday_end_hour=17)
UTC = "UTC"


def ts(s):
    return pd.Timestamp(s, tz=UTC)


@pytest.mark.parametrize("start,hours,expected", [
    ("2026-11-23 10:15", 1, "2026-11-23 11:15"),    # Monday, inside hours
    ("2026-11-23 16:00", 1, "2026-11-23 17:00"),    # ends exactly at closing
    ("2026-11-23 16:30", 1, "2026-11-24 09:30"),    # spills to Tuesday
    ("2026-11-27 16:45", 1, "2026-11-30 09:45"),    # Friday afternoon -> Monday
    ("2026-11-27 19:00", 1, "2026-11-30 10:00"),    # Friday evening -> Monday
    ("2026-11-28 12:00", 1, "2026-11-30 10:00"),    # Saturday
    ("2026-11-29 23:59", 1, "2026-11-30 10:00"),    # Sunday night
    ("2026-11-23 03:00", 1, "2026-11-23 10:00"),    # before opening
    ("2026-11-27 15:00", 10, "2026-11-30 17:00"),   # multi-day: Fri 2h + Mon 8h -> Monday's close
    ("2026-11-27 15:00", 10.5, "2026-12-01 09:30"),  # ... and half an hour more on Tuesday
    ("2026-11-26 10:00", 24, "2026-12-01 10:00"),   # three working days over a weekend
    ("2026-11-23 09:00", 0.25, "2026-11-23 09:15"),
])
def test_sla_deadline_in_working_hours(start, hours, expected):
    assert add_working_hours(ts(start), hours, CFG) == ts(expected)


def test_working_hours_vectorised_and_configurable():
    starts = pd.Series([ts("2026-11-27 16:45"), ts("2026-11-28 12:00"), ts("2026-11-23 10:15")])
    got = add_working_hours_ns(starts.astype("datetime64[ns, UTC]").array.asi8, 1, CFG)
    assert [pd.Timestamp(v, tz=UTC) for v in got] == [ts("2026-11-30 09:45"), ts("2026-11-30 10:00"),
                                                     ts("2026-11-23 11:15")]
    six_days = RoutingConfig(sla_hours=2, workday_start_hour=8, workday_end_hour=18, workdays=(0, 1, 2, 3, 4, 5))
    assert add_working_hours(ts("2026-11-27 17:30"), 2, six_days) == ts("2026-11-28 09:30")  # Saturday works
    assert add_working_hours(ts("2026-11-28 17:30"), 2, six_days) == ts("2026-11-30 09:30")  # Sunday does not


def _pandas_business_hours(start: pd.Timestamp, end: pd.Timestamp) -> float:
    """The well-known baseline: pandas' BusinessHour calendar (Mon-Fri 09-17), minute by minute."""
    minutes = pd.date_range(start.ceil("min"), end.floor("min"), freq="min", inclusive="left")
    bh = pd.offsets.BusinessHour(start="09:00", end="17:00")
    return float(sum(bh.is_on_offset(m.tz_localize(None)) and m.hour < 17 for m in minutes)) / 60


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 60 * 24 * 14), st.integers(0, 60 * 24 * 9))
def test_working_hours_between_agrees_with_pandas_business_hours(offset_min, length_min):
    start = ts("2026-11-20 00:00") + pd.Timedelta(minutes=offset_min)
    end = start + pd.Timedelta(minutes=length_min)
    got = working_hours_between_ns(np.array([start.value]), np.array([end.value]), CFG)[0]
    assert got == pytest.approx(_pandas_business_hours(start, end), abs=1e-9)
    # ... and it inverts add_working_hours: from a moment inside working hours, +h then back is h.
    if got > 0:
        back = add_working_hours_ns(np.array([start.value]), got, CFG)
        assert working_hours_between_ns(np.array([start.value]), back, CFG)[0] == pytest.approx(got)


def test_working_hours_between_cases():
    starts = np.array([ts(s).value for s in ("2026-11-30 10:00", "2026-11-27 16:00", "2026-11-28 12:00")])
    ends = np.array([ts(s).value for s in ("2026-12-01 00:00", "2026-11-30 10:30", "2026-11-27 16:00")])
    assert list(working_hours_between_ns(starts, ends, CFG)) == [7.0, 2.5, -1.0]


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


def test_queue_owner_is_kept_before_round_robin():
    leads = pd.DataFrame({"golden_id": ["a", "b"], "owner_id": [None, None], "queue_owner_id": ["E2", "X1"],
                          "country_code": ["DE", "DE"]})
    got = assign_owners(leads, OWNERS).set_index("golden_id")
    assert got.loc["a", "owner_id"] == "E2"           # the rep the queue gave it yesterday, still active
    assert got.loc["b", "owner_id"] == "E1"           # that rep left: round-robin, E2's slot is taken


def _scored(rows):
    base = {"status": "new", "lead_source": "form_fill", "email_opt_out": False, "owner_id": "W1",
            "country_code": "US", "touches": 0, "demo_requested": False, "pricing_viewed": False,
            "unsubscribed": False, "bounced": False, "reasons": "[]", "last_touch_at": pd.NaT,
            "last_rep_touch_at": pd.NaT, "last_marketing_touch_at": pd.NaT, "interest": "general",
            "created_at": ts("2026-10-01"), "probability": 0.5, "model_version": "rules-test"}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    golden = frame[["golden_id", "status", "lead_source", "email_opt_out", "owner_id", "country_code", "created_at"]]
    scores = frame.drop(columns=["status", "lead_source", "email_opt_out", "owner_id", "country_code", "created_at"])
    return golden, scores


MONDAY = ts("2026-11-23 00:00")


def test_route_splits_open_leads_and_excludes_opt_outs_from_email():
    golden, scores = _scored([
        {"golden_id": "hot", "score": 90, "tier": "hot"},
        {"golden_id": "warm", "score": 50, "tier": "warm", "touches": 4, "pricing_viewed": True,
         "interest": "webinar", "last_touch_at": ts("2026-11-20"), "last_marketing_touch_at": ts("2026-11-20")},
        {"golden_id": "cold", "score": 5, "tier": "cold", "email_opt_out": True},
        {"golden_id": "bounced", "score": 30, "tier": "cool", "bounced": True},
        {"golden_id": "unsub", "score": 30, "tier": "cool", "unsubscribed": True, "lead_source": "email"},
        {"golden_id": "done", "score": 95, "tier": "hot", "status": "converted"},
    ])
    now = ts("2026-11-23 10:00")
    sales, nurture = route(golden, scores, OWNERS, now, CFG)
    assert sales["golden_id"].tolist() == ["hot"]
    # An old lead that is hot tonight ripened now: deadline one working hour from now.
    assert sales["respond_by"].iloc[0] == ts("2026-11-23 11:00")
    assert not sales["pass_back"].iloc[0]
    n = nurture.set_index("golden_id")
    assert sorted(n.index) == ["bounced", "cold", "unsub", "warm"]  # converted leads are routed nowhere
    assert n.loc["warm", "segment"] == "decision/webinar/form_fill" and n.loc["warm", "channel"] == "email"
    assert n.loc["warm", "cadence_days"] == 14 and n.loc["cold", "cadence_days"] == 30
    assert n.loc["warm", "next_touch_at"] == ts("2026-12-04")
    assert n.loc["warm", "touches_so_far"] == 4
    for opted in ("cold", "bounced", "unsub"):  # never in an email segment
        assert n.loc[opted, "channel"] == "no_email" and n.loc[opted, "segment"].startswith("no_email/")
        assert n.loc[opted, "email_opt_out"]
    assert n.loc["unsub", "segment"] == "no_email/awareness/email"


def test_new_lead_deadline_runs_from_creation_across_the_weekend():
    golden, scores = _scored([{"golden_id": "new", "score": 80, "tier": "hot", "created_at": ts("2026-11-27 16:30")}])
    sales, _ = route(golden, scores, OWNERS, ts("2026-11-28 00:00"), CFG, previous_run_at=ts("2026-11-27 00:00"))
    row = sales.iloc[0]
    assert row.ripened_at == ts("2026-11-27 16:30")
    assert row.respond_by == ts("2026-11-30 09:30")  # Friday 16:30 + 1 working hour


def _previous_sales(**over):
    base = {"golden_id": "g", "owner_id": "W1", "queued_at": ts("2026-11-20 00:00"),
            "ripened_at": ts("2026-11-20 00:00"), "respond_by": ts("2026-11-20 10:00"), "pass_back": False,
            "pass_back_reason": None}
    return pd.DataFrame([{**base, **over}])


def test_sla_missed_drops_to_nurture_with_a_flag():
    golden, scores = _scored([{"golden_id": "g", "score": 85, "tier": "hot", "owner_id": None,
                               "last_touch_at": ts("2026-11-19")}])
    sales, nurture = route(golden, scores, OWNERS, MONDAY, CFG, previous_sales=_previous_sales())
    assert sales.empty
    row = nurture.set_index("golden_id").loc["g"]
    assert row.sla_missed and row.sla_missed_at == ts("2026-11-20 10:00") and row.missed_owner_id == "W1"
    # The next night it is still hot but showed no new interest: it stays in nurture, still flagged.
    sales2, nurture2 = route(golden, scores, OWNERS, MONDAY + pd.Timedelta(days=1), CFG, previous_nurture=nurture)
    assert sales2.empty and nurture2.set_index("golden_id").loc["g", "sla_missed"]


def test_a_rep_touch_since_queueing_keeps_the_lead_and_its_clock():
    golden, scores = _scored([{"golden_id": "g", "score": 85, "tier": "hot", "owner_id": None,
                               "last_rep_touch_at": ts("2026-11-20 09:30")}])
    sales, nurture = route(golden, scores, OWNERS, MONDAY, CFG, previous_sales=_previous_sales())
    assert nurture.empty
    row = sales.iloc[0]
    assert row.responded and row.owner_id == "W1"  # the owner the queue gave it, kept
    assert (row.queued_at, row.respond_by) == (ts("2026-11-20 00:00"), ts("2026-11-20 10:00"))


def test_deadline_not_yet_passed_is_not_a_miss():
    golden, scores = _scored([{"golden_id": "g", "score": 85, "tier": "hot"}])
    sales, _ = route(golden, scores, OWNERS, ts("2026-11-20 09:00"), CFG, previous_sales=_previous_sales())
    assert sales["golden_id"].tolist() == ["g"] and not sales["responded"].iloc[0]


def test_pass_back_from_nurture_when_the_score_crosses_hot():
    reasons = json.dumps([{"factor": "demo requested", "points": 8}, {"factor": "lead source", "points": 20},
                          {"factor": "engagement (decayed)", "points": 30}])
    golden, scores = _scored([
        {"golden_id": "ripe", "score": 78, "tier": "hot", "reasons": reasons, "owner_id": None, "country_code": "DE"},
        {"golden_id": "still", "score": 60, "tier": "warm"},
    ])
    previous_nurture = pd.DataFrame({"golden_id": ["ripe", "still"],
                                     "sla_missed_at": [pd.NaT, pd.NaT], "missed_owner_id": [None, None],
                                     "next_touch_at": [ts("2026-12-01"), ts("2026-11-30")]})
    asked = []

    def previous_scores_of(ids):  # last night's scores, as the warehouse's score_history gives them
        asked.extend(ids)
        return [{"ripe": 52, "still": 55}[i] for i in ids]

    sales, nurture = route(golden, scores, OWNERS, MONDAY, CFG, previous_nurture=previous_nurture,
                           previous_scores_of=previous_scores_of)
    assert asked == ["ripe"]  # only the lead passing back is looked up
    row = sales.set_index("golden_id").loc["ripe"]
    assert row.pass_back and row.owner_id == "E1"
    assert row.pass_back_reason.startswith("ripened in nurture: score 52 -> 78 (hot)")
    assert "demo requested +8" in row.pass_back_reason
    assert row.respond_by == ts("2026-11-23 10:00")  # ripened tonight: one working hour from Monday 09:00
    n = nurture.set_index("golden_id")
    assert list(n.index) == ["still"] and n.loc["still", "next_touch_at"] == ts("2026-11-30")  # plan kept


def test_missed_lead_with_new_interest_is_passed_back():
    golden, scores = _scored([{"golden_id": "g", "score": 88, "tier": "hot",
                               "last_marketing_touch_at": ts("2026-11-22 15:00")}])
    previous_nurture = pd.DataFrame({"golden_id": ["g"],
                                     "sla_missed_at": [ts("2026-11-20 10:00")], "missed_owner_id": ["W1"],
                                     "next_touch_at": [ts("2026-11-24")]})
    sales, nurture = route(golden, scores, OWNERS, MONDAY, CFG, previous_nurture=previous_nurture)
    assert nurture.empty and sales["pass_back"].tolist() == [True]


def test_route_is_vectorised_at_scale():
    """50k open leads with 2% hot route in well under a second per 10k (the owner loop is over hot leads only)."""
    import time
    n = 50_000
    rng = np.random.default_rng(0)
    tier = np.where(rng.random(n) < 0.02, "hot", rng.choice(["warm", "cool", "cold"], n))
    golden = pd.DataFrame({"golden_id": [f"g{i}" for i in range(n)], "status": "new", "lead_source": "email",
                           "email_opt_out": rng.random(n) < 0.05, "owner_id": None, "country_code": "US",
                           "created_at": ts("2026-01-01")})
    scores = pd.DataFrame({"golden_id": golden.golden_id, "score": np.where(tier == "hot", 80, 30), "tier": tier,
                           "touches": rng.integers(0, 12, n), "demo_requested": False, "pricing_viewed": False,
                           "unsubscribed": False, "bounced": False, "reasons": "[]", "interest": "general",
                           "last_touch_at": ts("2026-11-01"), "last_rep_touch_at": pd.NaT,
                           "last_marketing_touch_at": ts("2026-11-01"), "probability": 0.3, "model_version": "x"})
    started = time.perf_counter()
    sales, nurture = route(golden, scores, OWNERS, MONDAY, CFG)
    assert time.perf_counter() - started < 10
    assert len(sales) + len(nurture) == n and len(sales) == int((tier == "hot").sum())
    assert sales["owner_id"].isin(["W1"]).all() and sales["over_capacity"].sum() == len(sales) - 5


def test_route_step_reads_only_what_routing_uses_and_routes_the_same(run_context):
    """The step reads golden_leads and lead_scores without the columns routing ignores, and lead_reasons only
    for hot leads: its queues must equal route() over the whole files."""
    from slowburn.pipeline import _previous_queues, run_step
    from slowburn.ripeness import load_config

    for step in ("extract", "normalise", "validate", "dedupe", "score", "route"):
        run_step(run_context, step)
    previous_sales, previous_nurture, previous_at = _previous_queues(run_context)
    owners = run_context.read("owners")
    # A first night explains every lead: its reasons are all in the run's lead_reasons, summing to the score.
    scores = run_context.read("lead_scores").merge(run_context.read("lead_reasons")[["golden_id", "reasons"]],
                                                   on="golden_id", how="left")
    whole = route(run_context.read("golden_leads"), scores, owners, run_context.as_of,
                  RoutingConfig.from_config(load_config()), previous_sales=previous_sales,
                  previous_nurture=previous_nurture, previous_run_at=previous_at)
    for name, expected in zip(("sales_queue", "nurture_queue"), whole):
        got = run_context.read(name)
        assert len(got) and not got.isna().all().all()
        pd.testing.assert_frame_equal(got, expected.astype(got.dtypes.to_dict()), check_dtype=False, obj=name)
    assert run_context.read("sales_queue")["reasons"].notna().all()


def test_previous_queues_from_the_folder_equal_the_warehouse_state(tmp_path):
    """Before a night loads, routing reads the previous queues from the previous load's attempt folder
    (half a million nurture rows from SQLite cost seconds at 1M leads); at the warehouse's whole
    seconds they equal the warehouse's queue state, which is read when the folder cannot be used."""
    from slowburn.pipeline import RunContext, _previous_queues, run_all, run_step
    from conftest import NOW
    from slowburn.sample import generate, next_night

    generate(tmp_path / "s1", 1500, seed=5, now=NOW)
    next_night(tmp_path / "s1", out=tmp_path / "s2")
    home = tmp_path / "home"
    night1 = RunContext(logical_date=NOW, sources_path=tmp_path / "s1" / "sources.yaml", home=home)
    run_all(night1)
    night2 = RunContext(logical_date=NOW + pd.Timedelta(days=1), sources_path=tmp_path / "s2" / "sources.yaml",
                        home=home)
    for step in ("extract", "normalise", "validate", "dedupe", "score"):
        run_step(night2, step)
    *from_folder, at = _previous_queues(night2)
    for name in ("sales_queue", "nurture_queue"):
        night1.path(name).unlink()  # the folder no longer proves its copy: the warehouse is read
    *from_warehouse, at_too = _previous_queues(night2)
    assert at == at_too and len(from_folder[1]) > 100
    for folder, warehouse in zip(from_folder, from_warehouse):
        key = folder.columns[0]
        pd.testing.assert_frame_equal(folder.sort_values(key).reset_index(drop=True),
                                      warehouse.sort_values(key).reset_index(drop=True), check_dtype=False)
