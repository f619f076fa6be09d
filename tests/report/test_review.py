"""The weekly lead review: every assigned lead, totals per rep and team, score trend, plots, CSV."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import NOW, write_tiny_sources
from slowburn.report.review import follow_up_depth, write_weekly_review


@pytest.fixture(scope="module")
def two_weeks(tmp_path_factory):
    """Two nightly runs a week apart; in the second, L9's owner has left and L1 got more touches."""
    from slowburn.pipeline import RunContext, run_all
    tmp = tmp_path_factory.mktemp("review")
    sources = write_tiny_sources(tmp / "src")
    home = tmp / "home"
    # The hand-written leads were modified up to NOW - 1 day: the first run's data interval must reach them.
    first = RunContext(logical_date=NOW - pd.Timedelta(days=7), sources_path=sources, home=home,
                       data_interval_end=NOW)
    run_all(first)
    touches = sources.parent / "touches.csv"
    touches.write_text(touches.read_text(encoding="utf-8")
                       + "salesforce,L1,meeting,in_person,2026-11-22T15:00:00Z,O1\n"
                       + "salesforce,L1,call,phone,2026-11-22T16:00:00Z,O1\n", encoding="utf-8")
    second = RunContext(logical_date=NOW, sources_path=sources, home=home)
    run_all(second)
    out = tmp / "reviews"
    headline = write_weekly_review(second.warehouse(), out, NOW + pd.Timedelta(hours=6))
    return first, second, headline


def test_review_lists_every_assigned_lead_with_trend_and_flags(two_weeks):
    first, second, headline = two_weeks
    wh = second.warehouse()
    golden = wh.read_table("golden_leads")
    assigned = golden[golden.owner_id.notna()]
    leads = pd.read_csv(headline["paths"]["leads_csv"])
    assert sorted(leads.golden_id) == sorted(assigned.golden_id)
    assert headline["latest_run"] == second.run_id and headline["prior_run"] == first.run_id
    for col in ("rep", "team", "status", "age_days", "last_touch_at", "score", "score_week_ago", "score_trend",
                "open_flags"):
        assert col in leads.columns
    scores = wh.read_table("lead_scores")
    now = scores[scores.run_id == second.run_id].set_index("golden_id")["score"]
    before = scores[scores.run_id == first.run_id].set_index("golden_id")["score"]
    row = leads.set_index("golden_id")
    trend = (now - before).reindex(row.index)
    assert (row["score_trend"] == trend).all() and trend.abs().sum() > 0  # L1's new meeting moved its score
    flags = wh.read_table("lead_flags")
    open_now = flags[(flags.run_id == second.run_id) & (flags.status == "open")]
    for gid, got in row["open_flags"].fillna("").items():
        assert set(filter(None, got.split(", "))) == set(open_now.loc[open_now.golden_id == gid, "flag"])
    ghost = row[row.owner_id == "O9"]
    assert list(ghost["team"]) == ["(unknown owner)"] and "orphaned" in ghost["open_flags"].iloc[0]


def test_totals_per_rep_and_team_add_up(two_weeks):
    _, _, headline = two_weeks
    leads = pd.read_csv(headline["paths"]["leads_csv"])
    reps = pd.read_csv(headline["paths"]["reps_csv"])
    teams = pd.read_csv(headline["paths"]["teams_csv"])
    assert reps.set_index("owner_id")["leads"].to_dict() == leads.groupby("owner_id").size().to_dict()
    assert teams["leads"].sum() == reps["leads"].sum() == len(leads) == headline["assigned_leads"]
    assert reps.set_index("owner_id").loc["O1", "rep"] == "Rita Rep"


def test_html_has_plots_rep_pages_and_escaped_text(two_weeks):
    _, _, headline = two_weeks
    page = open(headline["paths"]["html"], encoding="utf-8").read()
    assert set(headline["plots"]) == {"funnel_by_stage", "lead_age_distribution", "score_distribution",
                                      "flags_over_time", "follow_up_depth"}
    assert page.count("data:image/png;base64,") == 5
    assert 'href="reps/O1.html"' in page
    rep_page = (pd.io.common.stringify_path(headline["paths"]["folder"]) + "/reps/O1.html")
    text = open(rep_page, encoding="utf-8").read()
    assert "Every assigned lead" in text and "Rita Rep" in text
    saved = json.loads(open(headline["paths"]["folder"] + "/review.json", encoding="utf-8").read())
    assert saved["week"] == "2026-W48" and saved["assigned_leads"] == headline["assigned_leads"]


def test_follow_up_depth_bins():
    depth = follow_up_depth(pd.Series([0, 1, 1, 2, 3, 4, 5, 12, 13, 30]))
    assert depth.to_dict() == {"0": 1, "1": 2, "2": 1, "3": 1, "4": 1, "5-12": 2, "13+": 2}


def test_review_needs_a_run(tmp_path):
    from slowburn.warehouse import Warehouse
    with pytest.raises(RuntimeError, match="no nightly run"):
        write_weekly_review(Warehouse(f"sqlite:///{tmp_path / 'empty.db'}"), tmp_path / "out", NOW)
