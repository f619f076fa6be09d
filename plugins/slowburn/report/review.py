"""The weekly lead review: for every rep and team, the status and progress of every assigned lead.

`write_weekly_review(warehouse, out_dir, as_of)` reads the warehouse as the latest nightly run at or
before `as_of` left it and writes, into out_dir/<ISO week>/:

- leads.csv: every assigned lead (owner_id set) with rep, team, status, stage, age, last touch, rep
  contacts, score, the score a week earlier and the trend, and its open flags;
- reps.csv and teams.csv: totals per rep and per team;
- review.html: totals per team and per rep, and the plots (funnel by stage, lead age distribution,
  score distribution, open flags over time, follow-up depth against the 5-12 contacts pattern);
- reps/<owner_id>.html: one page per rep listing every lead they own;
- review.json: the headline numbers and the paths.

Leads whose owner is not in the owners table still appear, under that owner id with team
"(unknown owner)", so that nothing assigned is missing from the meeting.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd

from slowburn.contracts import LEAD_STAGES, OPEN_STATUSES
from slowburn.report import plots

RUN_FORMAT = "%Y-%m-%dT%H%M%S"
DEPTH_BINS = [(0, 0, "0"), (1, 1, "1"), (2, 2, "2"), (3, 3, "3"), (4, 4, "4"), (5, 12, "5-12"), (13, None, "13+")]
LEAD_COLUMNS = ["owner_id", "rep", "team", "golden_id", "name", "company", "email", "status", "stage",
                "lead_source", "age_days", "last_touch_at", "rep_contacts", "score", "tier", "score_week_ago",
                "score_trend", "open_flags"]


def _run_id(ts: pd.Timestamp) -> str:
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime(RUN_FORMAT)


def _run_time(run_id: str) -> pd.Timestamp:
    return pd.Timestamp(pd.to_datetime(run_id, format=RUN_FORMAT)).tz_localize("UTC")


def load_review_frames(wh, as_of: pd.Timestamp, weeks_of_history: int = 12) -> dict:
    """The frames the review needs, read from the warehouse with one query per table."""
    wh.ensure_schema()
    runs = wh.read("SELECT run_id FROM run_ledger WHERE run_id <= :r ORDER BY run_id", r=_run_id(as_of))["run_id"]
    if runs.empty:
        raise RuntimeError(f"no nightly run at or before {as_of}: run slowburn_nightly first")
    latest = runs.iloc[-1]
    latest_at = _run_time(latest)
    week_ago = runs[runs <= _run_id(latest_at - pd.Timedelta(days=7))]
    prior = week_ago.iloc[-1] if len(week_ago) else None
    golden = wh.read_typed("SELECT golden_id, first_name, last_name, email, company, owner_id, status, stage, "
                           "lead_source, created_at FROM golden_leads", datetime_columns=("created_at",))
    scores = wh.read_typed("SELECT golden_id, score, tier, rep_touches, last_touch_at FROM lead_scores "
                           "WHERE run_id = :r", datetime_columns=("last_touch_at",), r=latest)
    before = (wh.read("SELECT golden_id, score AS score_week_ago FROM lead_scores WHERE run_id = :r", r=prior)
              if prior else pd.DataFrame(columns=["golden_id", "score_week_ago"]))
    owners = wh.read("SELECT owner_id, name, team FROM owners WHERE run_id = :r", r=latest)
    flags = wh.read("SELECT golden_id, flag FROM lead_flags WHERE run_id = :r AND COALESCE(status, 'open') = 'open'",
                    r=latest)
    since = _run_id(latest_at - pd.Timedelta(weeks=weeks_of_history))
    trend = wh.read("SELECT run_id, flag, COUNT(*) AS n FROM lead_flags WHERE run_id > :s AND run_id <= :r "
                    "AND COALESCE(status, 'open') = 'open' GROUP BY run_id, flag", s=since, r=latest)
    return {"latest_run": latest, "prior_run": prior, "golden": golden, "scores": scores, "before": before,
            "owners": owners, "flags": flags, "flag_trend": trend}


def build_review(frames: dict, as_of: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Leads, per-rep and per-team frames for the review (pure: no I/O)."""
    as_of = pd.Timestamp(as_of)
    golden = frames["golden"]
    leads = golden[golden["owner_id"].notna()]
    leads = leads.merge(frames["scores"], on="golden_id", how="left")
    leads = leads.merge(frames["before"], on="golden_id", how="left")
    owners = frames["owners"].drop_duplicates("owner_id")
    leads = leads.merge(owners.rename(columns={"name": "rep"}), on="owner_id", how="left")
    known = leads["rep"].notna() | leads["owner_id"].isin(owners["owner_id"])
    leads["rep"] = leads["rep"].astype("string").fillna(leads["owner_id"].astype("string"))
    leads["team"] = leads["team"].astype("string").where(known, "(unknown owner)").fillna("(no team)")
    flags = frames["flags"]
    if len(flags):
        joined = flags.sort_values("flag").groupby("golden_id")["flag"].agg(", ".join)
        leads["open_flags"] = leads["golden_id"].map(joined).astype("string")
        leads["n_open_flags"] = leads["golden_id"].map(flags.groupby("golden_id").size()).fillna(0).astype(int)
    else:
        leads["open_flags"] = pd.Series(pd.NA, index=leads.index, dtype="string")
        leads["n_open_flags"] = 0
    created = pd.to_datetime(leads["created_at"], utc=True)
    leads["age_days"] = ((as_of - created) / pd.Timedelta(days=1)).astype("Float64").round(0).astype("Int64")
    leads["rep_contacts"] = pd.to_numeric(leads["rep_touches"], errors="coerce").fillna(0).astype(int)
    leads["score"] = pd.to_numeric(leads["score"], errors="coerce").astype("Int64")
    leads["score_week_ago"] = pd.to_numeric(leads["score_week_ago"], errors="coerce").astype("Int64")
    leads["score_trend"] = leads["score"] - leads["score_week_ago"]
    name = (leads["first_name"].astype("string").fillna("") + " " + leads["last_name"].astype("string").fillna(""))
    leads["name"] = name.str.strip()
    leads["is_open"] = leads["status"].isin(OPEN_STATUSES) | leads["status"].isna()
    leads = leads.sort_values(["team", "rep", "owner_id", "status", "age_days"], kind="stable").reset_index(drop=True)

    flagsets = pd.DataFrame({
        "converted": leads["status"].eq("converted").fillna(False).astype(int),
        "score_up": (leads["score_trend"] > 0).fillna(False).astype(int),
        "score_down": (leads["score_trend"] < 0).fillna(False).astype(int),
        "leads_with_open_flags": (leads["n_open_flags"] > 0).astype(int),
        "never_contacted": (leads["rep_contacts"] == 0).astype(int),
        "contacts_5_12": leads["rep_contacts"].between(5, 12).astype(int),
    })

    def totals(by: list[str]) -> pd.DataFrame:
        keys = [leads[c].fillna("") for c in by]
        g = leads.groupby(keys, sort=True)
        out = pd.DataFrame({"leads": g.size(), "open": g["is_open"].sum()})
        out = out.join(flagsets.groupby(keys, sort=True).sum())
        out["median_age_days"] = g["age_days"].median().round(0)
        out["mean_score"] = g["score"].mean().round(1)
        out["open_flags"] = g["n_open_flags"].sum()
        cols = ["leads", "open", "converted", "median_age_days", "mean_score", "score_up", "score_down",
                "leads_with_open_flags", "open_flags", "never_contacted", "contacts_5_12"]
        return out[cols].rename_axis(by).reset_index()

    return {"leads": leads, "reps": totals(["team", "owner_id", "rep"]), "teams": totals(["team"])}


def follow_up_depth(contacts: pd.Series) -> pd.Series:
    labels = [lab for _, _, lab in DEPTH_BINS]
    out = {}
    for lo, hi, lab in DEPTH_BINS:
        out[lab] = int((contacts >= lo).sum() if hi is None else contacts.between(lo, hi).sum())
    return pd.Series(out)[labels]


def review_plots(review: dict, frames: dict) -> dict[str, str]:
    leads = review["leads"]
    stage_counts = {s: int((leads["stage"] == s).sum()) for s in LEAD_STAGES if s != "disqualified"}
    out = {"funnel_by_stage": plots.funnel(stage_counts, "Funnel by stage (assigned leads)")}
    ages = leads.loc[leads["is_open"], "age_days"].dropna().astype(float)
    out["lead_age_distribution"] = plots.histogram(ages, bins=range(0, 800, 30), xlabel="age of open leads (days)",
                                                   title="Lead age distribution", color="#4bacc6")
    out["score_distribution"] = plots.histogram(leads["score"].dropna().astype(float), bins=range(0, 105, 5),
                                                xlabel="ripeness score", title="Score distribution")
    trend = frames["flag_trend"]
    table = (trend.pivot_table(index="run_id", columns="flag", values="n", aggfunc="sum").fillna(0).sort_index()
             if len(trend) else pd.DataFrame())
    if len(table):
        table.index = [f"{r[:10]}" for r in table.index]
    out["flags_over_time"] = plots.lines(table, "run", "open flags", "Open flags over time")
    depth = follow_up_depth(leads["rep_contacts"])
    share = depth.get("5-12", 0) / max(int(depth.sum()), 1)
    out["follow_up_depth"] = plots.bars(list(depth.index), depth.to_numpy(), "Follow-up depth (rep contacts per lead)",
                                        "rep contacts", highlight=("5-12",),
                                        note=f"80% of sales close on contact 5-12; {share:.0%} of leads got there")
    return out


def _slug(owner_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(owner_id)) or "_"


def _header(columns) -> str:
    return "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>"


def _row_strings(frame: pd.DataFrame, links: dict[str, pd.Series] | None = None) -> pd.Series:
    """Each row as an escaped "<tr>...</tr>", built column-wise over the whole frame at once."""
    links = links or {}
    cells = pd.Series("", index=frame.index, dtype=object)
    for col in frame.columns:
        s = frame[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            text = s.dt.strftime("%Y-%m-%d %H:%M")
        else:
            text = s.astype("string")
        text = text.astype("string").fillna("")
        if not (pd.api.types.is_numeric_dtype(s.dtype) or isinstance(s.dtype, pd.DatetimeTZDtype)):
            text = text.str.replace("&", "&amp;", regex=False).str.replace("<", "&lt;", regex=False).str.replace(
                ">", "&gt;", regex=False)
        if col in links:
            text = "<a href=\"" + links[col].astype("string").fillna("") + "\">" + text + "</a>"
        cells = cells + ("<td>" + text + "</td>").astype(object)
    return "<tr>" + cells + "</tr>"


def _html_table(frame: pd.DataFrame, links: dict[str, pd.Series] | None = None) -> str:
    return f"<table>{_header(frame.columns)}{''.join(_row_strings(frame, links))}</table>"


_STYLE = """<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.2em .45em;font-size:12px;
text-align:left}th{background:#f3f3f3}figure{display:inline-block;margin:.5em 1em .5em 0}
figcaption{font-size:12px;color:#555}</style>"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>{_STYLE}"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def write_weekly_review(wh, out_dir: str | Path, as_of: pd.Timestamp, weeks_of_history: int = 12) -> dict:
    """Write the review for the week of `as_of` (see the module docstring) and return its headline."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    return write_review(load_review_frames(wh, as_of, weeks_of_history), out_dir, as_of)


def write_review(frames: dict, out_dir: str | Path, as_of: pd.Timestamp) -> dict:
    """Write the review files from load_review_frames' frames (golden, scores, before, owners, flags,
    flag_trend, latest_run, prior_run)."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    review = build_review(frames, as_of)
    iso = as_of.isocalendar()
    week = f"{iso[0]}-W{iso[1]:02d}"
    folder = Path(out_dir) / week
    (folder / "reps").mkdir(parents=True, exist_ok=True)
    leads, reps, teams = review["leads"], review["reps"], review["teams"]
    leads[LEAD_COLUMNS].to_csv(folder / "leads.csv", index=False)
    reps.to_csv(folder / "reps.csv", index=False)
    teams.to_csv(folder / "teams.csv", index=False)
    images = review_plots(review, frames)

    rep_pages = {}
    shown = [c for c in LEAD_COLUMNS if c not in ("owner_id", "rep", "team")]
    lead_rows = _row_strings(leads[shown]).groupby(leads["owner_id"].to_numpy(), sort=False).agg("".join)
    total_cols = [c for c in reps.columns if c != "owner_id"]
    total_rows = pd.Series(_row_strings(reps[total_cols]).to_numpy(), index=reps["owner_id"].to_numpy())
    first = leads.drop_duplicates("owner_id").set_index("owner_id")
    counts = leads.groupby("owner_id", sort=False).size()
    lead_head, total_head = _header(shown), _header(total_cols)
    for owner_id, rows_html in lead_rows.items():
        rep, team = first.at[owner_id, "rep"], first.at[owner_id, "team"]
        body = (f"<p><a href=\"../review.html\">back to the team review</a> - team {html.escape(str(team))}"
                f", week {week}, run {frames['latest_run']}</p><h2>Totals</h2><table>{total_head}"
                f"{total_rows.get(owner_id, '')}</table><h2>Every assigned lead ({int(counts[owner_id])})</h2>"
                f"<table>{lead_head}{rows_html}</table>")
        name = f"reps/{_slug(owner_id)}.html"
        (folder / name).write_text(_page(f"Lead review: {rep} ({owner_id})", body), encoding="utf-8")
        rep_pages[owner_id] = name

    figures = "".join(f"<figure><img id=\"plot-{k}\" alt=\"{k.replace('_', ' ')}\" "
                      f"src=\"data:image/png;base64,{v}\"><figcaption>{k.replace('_', ' ')}</figcaption></figure>"
                      for k, v in images.items())
    rep_links = {"rep": reps["owner_id"].map(rep_pages)}
    body = (f"<p>Week {week}; leads as the nightly run {frames['latest_run']} left them; score trend against run "
            f"{frames['prior_run'] or '(none a week earlier)'}. CSV: <a href=\"leads.csv\">every lead</a>, "
            f"<a href=\"reps.csv\">per rep</a>, <a href=\"teams.csv\">per team</a>.</p>"
            f"<h2>Plots</h2><div id=\"plots\">{figures}</div>"
            f"<h2>Totals per team</h2>{_html_table(teams)}"
            f"<h2>Totals per rep</h2>{_html_table(reps, links=rep_links)}")
    (folder / "review.html").write_text(_page(f"Weekly lead review {week}", body), encoding="utf-8")
    headline = {
        "week": week, "as_of": as_of.isoformat(), "latest_run": frames["latest_run"], "prior_run": frames["prior_run"],
        "assigned_leads": int(len(leads)), "reps": int(len(reps)), "teams": int(len(teams)),
        "open_flags": int(leads["n_open_flags"].sum()),
        "follow_up_depth": {k: int(v) for k, v in follow_up_depth(leads["rep_contacts"]).items()},
        "plots": sorted(images),
        "paths": {"folder": str(folder.resolve()), "html": str((folder / "review.html").resolve()),
                  "leads_csv": str((folder / "leads.csv").resolve()), "reps_csv": str((folder / "reps.csv").resolve()),
                  "teams_csv": str((folder / "teams.csv").resolve())},
    }
    (folder / "review.json").write_text(json.dumps(headline, indent=2, default=str), encoding="utf-8")
    return headline
