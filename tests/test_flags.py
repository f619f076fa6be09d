"""Hygiene flags, on hand-made cases and against the planted truth of the sample."""
from __future__ import annotations

import pandas as pd

from conftest import NOW
from slowburn.flags import FlagConfig, flag_leads


def test_orphaned_and_unclosed_cases():
    owners = pd.DataFrame({"owner_id": ["O1", "O3"], "active": [True, False],
                           "deactivated_at": [pd.NaT, pd.Timestamp("2026-01-01", tz="UTC")],
                           "territory": ["NA-East", "NA-East"], "daily_capacity": [10, 10]})
    golden = pd.DataFrame({
        "golden_id": ["ok", "none", "ghost", "left", "closed", "idle"],
        "owner_id": ["O1", None, "O9", "O3", None, "O1"],
        "status": ["new", "new", "working", "new", "converted", "working"],
        "country_code": ["US"] * 6,
        "created_at": pd.to_datetime(["2026-11-01"] * 5 + ["2026-01-01"], utc=True),
        "last_activity_at": pd.to_datetime(["2026-11-20"] * 5 + ["2026-08-01"], utc=True),
    })
    scores = pd.DataFrame({"golden_id": golden["golden_id"], "last_touch_at": pd.NaT})
    flags = flag_leads(golden, scores, owners, NOW, FlagConfig(unclosed_after_days=45))
    got = flags.groupby("flag")["golden_id"].apply(sorted).to_dict()
    assert got == {"orphaned": ["ghost", "left", "none"], "unclosed": ["idle"]}
    ghost = flags[(flags.golden_id == "ghost")].iloc[0]
    assert "not in the owners table" in ghost.reason and ghost.suggested_action == "reassign to O1"


HOT = pd.Timestamp("2026-11-24T12:00:00Z")  # a Tuesday, inside working hours
OWNERS = pd.DataFrame({"owner_id": ["O1"], "active": [True], "deactivated_at": [pd.NaT],
                       "territory": ["NA-East"], "daily_capacity": [10]})


def _sla_case():
    """Five hot leads and one never sent to sales; respond-by in working hours as routing sets it."""
    from slowburn.route import RoutingConfig, add_working_hours
    ids = ["waiting", "late", "in_time", "not_due", "touched_before", "never_queued"]
    golden = pd.DataFrame({"golden_id": ids, "owner_id": "O1", "status": "new", "stage": None,
                           "country_code": "US", "created_at": pd.Timestamp("2026-11-20T08:00Z"),
                           "last_activity_at": pd.NaT})
    cfg = RoutingConfig()
    ripened = pd.to_datetime(["2026-11-23T08:00Z", "2026-11-23T08:00Z", "2026-11-23T08:00Z",
                              "2026-11-24T11:30Z", "2026-11-23T08:00Z"], utc=True)
    queue = pd.DataFrame({"golden_id": ids[:5], "owner_id": "O1", "score": [90, 80, 85, 75, 70],
                          "ripened_at": ripened, "queued_at": ripened,
                          "respond_by": [add_working_hours(r, cfg.sla_hours, cfg) for r in ripened]})
    touches = pd.DataFrame({"golden_id": ["late", "in_time", "touched_before", "never_queued"],
                            "touch_type": ["call", "call", "rep_email", "call"],
                            "occurred_at": pd.to_datetime(["2026-11-23T16:00Z", "2026-11-23T09:30Z",
                                                           "2026-11-22T09:00Z", "2026-11-24T11:00Z"], utc=True)})
    return golden, queue, touches, cfg


def test_sla_breach_counts_working_hours_for_queued_leads_only():
    golden, queue, touches, cfg = _sla_case()
    scores = pd.DataFrame({"golden_id": golden["golden_id"], "last_touch_at": pd.NaT})
    flags = flag_leads(golden, scores, OWNERS, HOT, FlagConfig(), touches=touches, sales_queue=queue, routing=cfg)
    sla = flags[flags.flag == "sla_breach"].set_index("golden_id")
    # Ripened Monday 08:00 -> respond by 10:00 (the day opens at 09:00); waiting until Tuesday 12:00 is
    # 7 + 3 = 10 working hours, not the 28 clock hours.
    assert sorted(sla.index) == ["late", "touched_before", "waiting"]
    assert sla.loc["waiting", "severity"] == "high" and "10 working hours" in sla.loc["waiting", "reason"]
    assert sla.loc["late", "severity"] == "low" and "6 working hours after" in sla.loc["late", "reason"]
    assert sla.loc["touched_before", "severity"] == "high"  # a touch before it ripened is no response
    import json
    assert json.loads(sla.loc["waiting", "evidence"])["respond_by"] == "2026-11-23T10:00:00+00:00"
    # Without the queues there is nothing to breach: the rule never looks at unqueued leads.
    assert "sla_breach" not in set(flag_leads(golden, scores, OWNERS, HOT, FlagConfig(), touches=touches).flag)


def test_sla_missed_leads_in_nurture_stay_flagged_for_the_rep_who_missed():
    golden, _, touches, cfg = _sla_case()
    nurture = pd.DataFrame({"golden_id": ["waiting", "in_time"], "sla_missed": [True, False],
                            "sla_missed_at": pd.to_datetime(["2026-11-23T10:00Z", None], utc=True),
                            "missed_owner_id": ["O7", None]})
    flags = flag_leads(golden, pd.DataFrame({"golden_id": [], "last_touch_at": []}), OWNERS, HOT, touches=touches,
                       nurture_queue=nurture, routing=cfg)
    [row] = flags[flags.flag == "sla_breach"].itertuples()
    assert (row.golden_id, row.severity, row.owner_id) == ("waiting", "medium", "O7")


def test_next_action_is_one_per_lead_ranked_by_severity_then_value():
    from slowburn.flags import action_counts, next_actions
    flags = pd.DataFrame({
        "golden_id": ["a", "a", "b", "c", "d", "e"], "flag": ["unclosed", "sla_breach", "dropped_followup",
                                                            "orphaned", "stale_status", "dropped_followup"],
        "severity": ["medium", "high", "medium", "high", "medium", "medium"],
        "owner_id": ["O1", "O1", "O1", None, "O1", "O1"], "reason": "r", "suggested_action": "act",
        "status": ["open", "open", "open", "open", "open", "closed"]})
    scores = pd.DataFrame({"golden_id": list("abcdeq"), "score": [10, 90, 50, 40, 30, 95]})
    queue = pd.DataFrame({"golden_id": ["q", "a"], "owner_id": ["O1", "O1"], "score": [95, 10],
                          "respond_by": pd.to_datetime(["2026-11-24T10:00Z"] * 2, utc=True)})
    got = next_actions(flags, scores, queue)
    assert got["golden_id"].is_unique and "e" not in set(got.golden_id)  # closed flags need nothing
    o1 = got[got.owner_id == "O1"].sort_values("rank")
    # high before medium; within medium the stale status (a closed deal) before a dropped follow-up.
    assert list(o1.golden_id) == ["q", "a", "d", "b"] and list(o1["rank"]) == [1, 2, 3, 4]
    a = got.set_index("golden_id").loc["a"]
    assert (a.flag, a.kind, a.other_flags) == ("sla_breach", "call now", 1)
    assert got.set_index("golden_id").loc["q", "action"].startswith("call by Tue 24 Nov 10:00")
    counts = action_counts(got).set_index("owner_id")
    assert counts.loc["O1", "actions"] == 4 and counts.loc["O1", "call now"] == 1 and counts.loc["", "reassign"] == 1


def test_null_stage_and_an_empty_night_do_not_crash():
    golden = pd.DataFrame({"golden_id": pd.Series(["a", "b"], dtype="string"), "owner_id": ["O1", "O1"],
                           "status": ["working", "new"], "stage": pd.Series([pd.NA, "disqualified"], dtype="string"),
                           "email_opt_out": pd.array([pd.NA, True], dtype="boolean"), "country_code": "US",
                           "created_at": pd.Timestamp("2026-11-01T00:00Z"), "last_activity_at": pd.NaT})
    touches = pd.DataFrame({"golden_id": ["a", "b"], "touch_type": ["email_bounce", "call"],
                            "occurred_at": pd.to_datetime(["2026-11-20", "2026-11-20"], utc=True)})
    touches = pd.concat([touches, touches.assign(touch_type="call")], ignore_index=True)
    scores = pd.DataFrame({"golden_id": ["a", "b"], "last_touch_at": pd.NaT})
    flags = flag_leads(golden, scores, OWNERS, NOW, touches=touches)
    worked = flags[flags.flag == "worked_not_closed"].set_index("golden_id")
    assert "email_bounce" in worked.loc["a", "reason"] and "stage disqualified" in worked.loc["b", "reason"]
    empty = golden.iloc[0:0]
    none = flag_leads(empty, scores.iloc[0:0], OWNERS, NOW, touches=touches.iloc[0:0],
                      outcomes=pd.DataFrame({"golden_id": [], "outcome": [], "closed_at": []}),
                      sales_queue=pd.DataFrame(columns=["golden_id", "owner_id", "respond_by", "ripened_at"]),
                      nurture_queue=pd.DataFrame(columns=["golden_id", "sla_missed"]))
    assert none.empty and list(none.columns)[:3] == ["golden_id", "flag", "severity"]


def test_a_night_with_no_valid_leads_flags_nothing_and_still_loads(tmp_path):
    """Every lead quarantined: the flag step must not crash on empty frames, and the quarantine loads."""
    from conftest import LEADS_CSV, write_tiny_sources
    from slowburn.pipeline import RunContext, run_all

    sources = write_tiny_sources(tmp_path / "src")
    lines = LEADS_CSV.splitlines()
    bad = [lines[0]] + [line for line in lines[1:] if line.startswith(("L4", "L5", "L6", "L7"))]
    (sources.parent / "leads.csv").write_text("\n".join(bad) + "\n", encoding="utf-8")
    ctx = RunContext(logical_date=NOW, sources_path=sources, home=tmp_path / "home")
    result = run_all(ctx)
    assert result["flag"]["lead_flags"] == 0 and result["load"]["quarantined_leads"] == 4
    assert len(ctx.warehouse().read_table("quarantine")) >= 4


def test_orphaned_keeps_the_rep_it_suggested_while_that_rep_is_active():
    """An open orphaned flag suggests the same rep every night (its row is not rewritten), until that rep leaves."""
    import json

    from slowburn.flags import orphaned

    owners = pd.DataFrame({"owner_id": ["O1", "O2", "O3"], "active": [True, True, True], "deactivated_at": pd.NaT,
                           "territory": "NA-East", "daily_capacity": 10})
    golden = pd.DataFrame({"golden_id": [f"g{i}" for i in range(4)], "owner_id": None, "status": "new",
                           "country_code": "US"})
    first = orphaned(golden, owners)
    made = {g: json.loads(e)["suggested_owner_id"] for g, e in zip(first.golden_id, first.evidence)}
    # A new orphan sorted first shifts the round-robin; the earlier suggestions stand.
    more = pd.concat([golden.head(1).assign(golden_id="a0"), golden], ignore_index=True)
    again = orphaned(more, owners, previous=first).set_index("golden_id")
    assert {g: json.loads(again.loc[g, "evidence"])["suggested_owner_id"] for g in made} == made
    assert (again.loc[list(made), "suggested_action"] == first.set_index("golden_id").suggested_action).all()
    # The suggested rep of g0 leaves: g0 gets another active rep.
    gone = made["g0"]
    left = owners.assign(active=owners.owner_id != gone)
    moved = orphaned(more, left, previous=first).set_index("golden_id")
    assert json.loads(moved.loc["g0", "evidence"])["suggested_owner_id"] not in (gone, None)


def test_flag_step_reads_only_what_the_rules_use_and_flags_the_same(run_context):
    """The step reads golden_leads, lead_scores and the queues without the columns no rule uses: its
    record must equal flag_leads over the whole files (a first night: the history is tonight's touches)."""
    from slowburn.flags import REP_TOUCHES, track_flags
    from slowburn.pipeline import _golden_id_of_touches, run_step
    from slowburn.ripeness import load_config
    from slowburn.route import RoutingConfig

    for step in ("extract", "normalise", "validate", "dedupe", "score", "route", "flag"):
        run_step(run_context, step)
    ctx, cfg = run_context, FlagConfig()
    golden, links = ctx.read("golden_leads"), ctx.read("lead_links")
    touches = ctx.read("touches")
    touches = touches[touches["touch_type"].isin(set(REP_TOUCHES) | set(cfg.qualifying_touches)
                                                 | set(cfg.disqualifying_touches))]
    history = touches.assign(golden_id=_golden_id_of_touches(touches, links))
    outcomes = ctx.read("outcomes").merge(links[["source_system", "source_id", "golden_id"]],
                                          on=["source_system", "source_id"])
    previous = ctx.read("previous_lead_flags")
    current = flag_leads(golden, ctx.read("lead_scores"), ctx.read("owners"), ctx.as_of, cfg, touches=history,
                         outcomes=outcomes, sales_queue=ctx.read("sales_queue"),
                         nurture_queue=ctx.read("nurture_queue"), routing=RoutingConfig.from_config(load_config()),
                         previous=previous)
    expected = track_flags(previous, current, ctx.as_of, ctx.run_id, keep_closed=False)
    got = ctx.read("lead_flags")
    assert got["flag"].nunique() >= 2
    order = ["golden_id", "flag"]
    pd.testing.assert_frame_equal(got.sort_values(order).reset_index(drop=True),
                                  expected.sort_values(order).reset_index(drop=True), check_dtype=False)
