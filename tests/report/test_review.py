"""The weekly lead review: every assigned lead, totals per rep and team, score trend, plots, CSV."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import NOW, write_tiny_sources
from hypothesis import given, settings, strategies as st

from slowburn.report.files import FORMULA_START, neutralise_formulas
from slowburn.report.review import ACTIONS_ON_TOP, follow_up_depth, week_reviewed, write_weekly_review


@pytest.fixture(scope="module")
def two_weeks(tmp_path_factory):
    """Two nightly runs a week apart; in the second, L9's owner has left and L1 got more touches."""
    from slowburn.pipeline import RunContext, run_all
    tmp = tmp_path_factory.mktemp("review")
    sources = write_tiny_sources(tmp / "src")
    home = tmp / "home"
    leads = sources.parent / "leads.csv"
    leads.write_text(leads.read_text(encoding="utf-8").replace(",Globex,", ",=HYPERLINK(\"http://x\"),"),
                     encoding="utf-8")
    # The hand-written leads were modified up to NOW - 1 day: the first run's data interval must reach them.
    first = RunContext(logical_date=NOW - pd.Timedelta(days=7), sources_path=sources, home=home,
                       data_interval_end=NOW)
    run_all(first)
    out = tmp / "reviews"
    earlier = write_weekly_review(first.warehouse(), out, NOW - pd.Timedelta(days=7) + pd.Timedelta(hours=6))
    touches = sources.parent / "touches.csv"
    touches.write_text(touches.read_text(encoding="utf-8")
                       + "salesforce,L1,meeting,in_person,2026-11-22T15:00:00Z,O1\n"
                       + "salesforce,L1,call,phone,2026-11-22T16:00:00Z,O1\n", encoding="utf-8")
    second = RunContext(logical_date=NOW, sources_path=sources, home=home)
    run_all(second)
    headline = write_weekly_review(second.warehouse(), out, NOW + pd.Timedelta(hours=6))
    return first, second, headline, earlier


def test_review_lists_every_assigned_lead_with_trend_and_flags(two_weeks):
    first, second, headline, _ = two_weeks
    wh = second.warehouse()
    golden = wh.read_table("golden_leads")
    expected = golden[golden.owner_id.notna() | golden.status.isin(["new", "working", "nurturing", "qualified"])]
    leads = pd.read_csv(headline["paths"]["leads_csv"])
    assert sorted(leads.golden_id) == sorted(expected.golden_id)
    assert headline["latest_run"] == second.run_id and headline["prior_run"] == first.run_id
    for col in ("rep", "team", "status", "age_days", "last_touch_at", "score", "score_week_ago", "score_trend",
                "open_flags"):
        assert col in leads.columns
    # lead_scores is the current score; score_history has a row per lead per change (first night: all).
    now = wh.read_table("lead_scores").set_index("golden_id")["score"]
    history = wh.read_table("score_history")
    before = history[history.run_id == first.run_id].set_index("golden_id")["score"]
    moved = history[history.run_id == second.run_id].set_index("golden_id")["score"]
    assert len(moved) < len(before) and set(moved.index) == set(now.index[now.ne(before.reindex(now.index))])
    row = leads.set_index("golden_id")
    trend = (now - before).reindex(row.index)
    assert (row["score_trend"] == trend).all() and trend.abs().sum() > 0  # L1's new meeting moved its score
    flags = wh.read_table("lead_flags")
    open_now = flags[flags.status == "open"]
    for gid, got in row["open_flags"].fillna("").items():
        assert set(filter(None, got.split(", "))) == set(open_now.loc[open_now.golden_id == gid, "flag"])
    ghost = row[row.owner_id == "O9"]
    assert list(ghost["team"]) == ["(unknown owner)"] and "orphaned" in ghost["open_flags"].iloc[0]
    assert list(ghost["rep"]) == ["O9 (not in the owners table)"]
    gone = row[row.owner_id == "O3"]
    assert list(gone["rep"]) == ["Gone Rep (left 2026-06-01)"]


def test_totals_per_rep_and_team_add_up(two_weeks):
    _, _, headline, _ = two_weeks
    leads = pd.read_csv(headline["paths"]["leads_csv"], keep_default_na=False, na_values=[""])
    reps = pd.read_csv(headline["paths"]["reps_csv"], keep_default_na=False, na_values=[""])
    teams = pd.read_csv(headline["paths"]["teams_csv"])
    assert reps.set_index("owner_id")["leads"].to_dict() == leads.groupby("owner_id").size().to_dict()
    assert teams["leads"].sum() == reps["leads"].sum() == len(leads)
    assert headline["assigned_leads"] + headline["unassigned_open_leads"] == len(leads)
    assert reps.set_index("owner_id").loc["O1", "rep"] == "Rita Rep"


def test_html_has_plots_rep_pages_and_escaped_text(two_weeks):
    _, _, headline, _ = two_weeks
    page = open(headline["paths"]["html"], encoding="utf-8").read()
    assert set(headline["plots"]) == {"funnel_by_stage", "lead_age_distribution", "score_distribution",
                                      "flags_over_time", "follow_up_depth"}
    assert page.count("data:image/png;base64,") == 5
    assert 'href="reps/O1.html"' in page
    rep_page = (pd.io.common.stringify_path(headline["paths"]["folder"]) + "/reps/O1.html")
    text = open(rep_page, encoding="utf-8").read()
    assert "Every lead" in text and "Rita Rep" in text
    # The action list comes first on a rep's page, before the lead table.
    actions = pd.read_csv(headline["paths"]["actions_csv"], keep_default_na=False, na_values=[""])
    owner = actions["owner_id"].dropna().iloc[0]
    text = open(f"{headline['paths']['folder']}/reps/{owner}.html", encoding="utf-8").read()
    assert text.index('id="action-list"') < text.index("Every lead")
    saved = json.loads(open(headline["paths"]["folder"] + "/review.json", encoding="utf-8").read())
    assert saved["assigned_leads"] == headline["assigned_leads"]
    assert "<b>" not in page and "&lt;" not in "".join(headline["plots"])


def test_week_is_the_week_reviewed_not_the_week_of_the_run(two_weeks):
    """The Monday-morning review after Monday 00:00's nightly run reviews Monday-Sunday just ended."""
    _, _, headline, earlier = two_weeks
    assert (headline["week"], headline["covers"]) == ("2026-W47", "2026-11-16 to 2026-11-22")
    assert earlier["week"] == "2026-W46"
    assert headline["paths"]["folder"].endswith("2026-W47")
    assert week_reviewed(pd.Timestamp("2026-11-25T00:00Z")) == ("2026-W48", "2026-11-23 to 2026-11-24 (week to date)")
    assert week_reviewed(pd.Timestamp("2027-01-04T00:00Z"))[0] == "2026-W53"


def test_open_leads_and_actions_first_with_trend_against_the_previous_review(two_weeks):
    _, second, headline, earlier = two_weeks
    leads = pd.read_csv(headline["paths"]["leads_csv"], keep_default_na=False, na_values=[""])
    for _, g in leads.groupby("owner_id", sort=False):
        is_open = g["status"].isin(["new", "working", "nurturing", "qualified"]).tolist()
        assert is_open == sorted(is_open, reverse=True)  # every open lead before any closed one
    actions = pd.read_csv(headline["paths"]["actions_csv"], keep_default_na=False, na_values=[""])
    assert actions["golden_id"].is_unique and len(actions) == headline["actions"] > 0
    for _, g in actions.groupby("owner_id"):
        assert list(g["rank"]) == list(range(1, len(g) + 1))
    assert headline["max_actions_on_a_rep_page"] <= ACTIONS_ON_TOP
    assert headline["previous_review"] == earlier["week"]
    reps = pd.read_csv(headline["paths"]["reps_csv"], keep_default_na=False, na_values=[""]).set_index("owner_id")
    before = pd.read_csv(earlier["paths"]["reps_csv"], keep_default_na=False, na_values=[""]).set_index("owner_id")
    both = reps.index.intersection(before.index)
    assert len(both) and (reps.loc[both, "open_flags_change"] == reps.loc[both, "open_flags"]
                          - before.loc[both, "open_flags"]).all()
    page = open(headline["paths"]["html"], encoding="utf-8").read()
    assert page.index('id="agenda"') < page.index("Totals per team") < page.index('id="plots"')


def test_csv_cells_cannot_become_formulas(two_weeks):
    _, _, headline, _ = two_weeks
    text = open(headline["paths"]["leads_csv"], encoding="utf-8").read()
    assert "=HYPERLINK" in text and ",=HYPERLINK" not in text and "'=HYPERLINK" in text
    for path in ("leads_csv", "reps_csv", "teams_csv", "actions_csv"):
        frame = pd.read_csv(headline["paths"][path], dtype=str, keep_default_na=False)
        for col in frame:
            texts = frame[col][~frame[col].str.fullmatch(r"-?\d+(\.\d+)?")]
            assert not texts.str.startswith(FORMULA_START).any(), (path, col)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=8), st.lists(st.integers(-5, 5), min_size=1, max_size=8))
def test_neutralise_formulas_property(texts, numbers):
    frame = pd.DataFrame({"t": pd.Series(texts, dtype="string"), "n": pd.Series((numbers * 8)[:len(texts)])})
    out = neutralise_formulas(frame)
    assert not out["t"].str.startswith(FORMULA_START).any()
    assert (out["n"] == frame["n"]).all()  # numbers stay numbers, negative ones too
    for before, after in zip(frame["t"], out["t"]):
        assert after == ("'" + before if before.startswith(FORMULA_START) else before)


def test_a_second_review_of_the_same_week_keeps_the_first(two_weeks, tmp_path):
    _, second, headline, _ = two_weeks
    out = pd.io.common.stringify_path(headline["paths"]["folder"])
    again = write_weekly_review(second.warehouse(), out.rsplit("/", 1)[0], NOW + pd.Timedelta(hours=9))
    assert again["week"] == headline["week"] and len(again["earlier_versions"]) == 1
    kept = again["earlier_versions"][0]
    old = json.loads(open(f"{out}/{kept['folder']}/review.json", encoding="utf-8").read())
    assert old["generated_at"] == headline["generated_at"]
    page = open(again["paths"]["html"], encoding="utf-8").read()
    assert 'id="versions"' in page and kept["folder"] in page


def test_follow_up_depth_bins():
    depth = follow_up_depth(pd.Series([0, 1, 1, 2, 3, 4, 5, 12, 13, 30]))
    assert depth.to_dict() == {"0": 1, "1": 2, "2": 1, "3": 1, "4": 1, "5-12": 2, "13+": 2}


def test_review_needs_a_run(tmp_path):
    from slowburn.warehouse import Warehouse
    with pytest.raises(RuntimeError, match="no nightly run"):
        write_weekly_review(Warehouse(f"sqlite:///{tmp_path / 'empty.db'}"), tmp_path / "out", NOW)
