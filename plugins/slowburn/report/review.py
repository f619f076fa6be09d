"""The weekly lead review: for every rep, what to act on first and the state of every lead they own.

`write_weekly_review(warehouse, out_dir, as_of)` reads the warehouse as the latest nightly run at or
before `as_of` left it and writes, into out_dir/<week reviewed>/:

- review.html: the meeting agenda on top (next actions per rep, counted by kind, with the change
  since the previous review), then totals per team and per rep and the plots (funnel by stage, lead
  age, scores, open flags over time, follow-up depth against the 5-12 contacts pattern);
- reps/<owner>.html: per rep, the short list of actions to take first (at most ACTIONS_ON_TOP, one
  screen), their totals against the previous review, then every lead they own, open leads first;
- actions.csv (every lead's one next action), leads.csv, reps.csv, teams.csv: spreadsheet-safe
  (cells that would start a formula are quoted, see slowburn.report.files);
- review.json: the headline numbers, the week covered and the paths.

The week is the one reviewed, not the one the report runs in: a Monday-morning run after Sunday's
nightly run reviews the week that just ended (ISO week of the last moment the data covers). A second
review of the same week keeps the earlier one under versions/<generated at>/ and says so.

Owners are shown by name; an owner missing from the owners table is shown as "<id> (not in the owners
table)" under team "(unknown owner)", a rep who left as "<name> (left <date>)", and open leads with
no owner under "(no owner)", so nothing assigned, or that should be, is missing from the meeting.
"""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd

from slowburn.contracts import LEAD_STAGES, OPEN_STATUSES
from slowburn.flags import action_counts, next_actions
from slowburn.report import plots
from slowburn.report.files import write_csv, write_text
from slowburn.report.words import owner_labels

RUN_FORMAT = "%Y-%m-%dT%H%M%S"
ACTIONS_ON_TOP = 10
NO_OWNER = "(no owner)"
DEPTH_BINS = [(0, 0, "0"), (1, 1, "1"), (2, 2, "2"), (3, 3, "3"), (4, 4, "4"), (5, 12, "5-12"), (13, None, "13+")]
LEAD_COLUMNS = ["owner_id", "rep", "team", "golden_id", "name", "company", "email", "status", "stage",
                "lead_source", "age_days", "last_touch_at", "rep_contacts", "score", "tier", "score_week_ago",
                "score_trend", "open_flags", "next_action"]
ACTION_COLUMNS = ["owner_id", "rep", "rank", "kind", "action", "golden_id", "name", "company", "flag", "severity",
                  "score", "reason", "other_flags", "respond_by"]
TREND_COLUMNS = ["open", "open_flags", "actions", "converted"]


def _run_id(ts: pd.Timestamp) -> str:
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime(RUN_FORMAT)


def _run_time(run_id: str) -> pd.Timestamp:
    return pd.Timestamp(pd.to_datetime(run_id, format=RUN_FORMAT)).tz_localize("UTC")


def week_reviewed(latest_run_at: pd.Timestamp) -> tuple[str, str]:
    """(ISO week label, "Mon date to Sun date") of the week the data ends in: a nightly run at Monday
    00:00 holds everything up to Sunday night, so it reviews the week before."""
    last = pd.Timestamp(latest_run_at) - pd.Timedelta(seconds=1)
    iso = last.isocalendar()
    monday = (last - pd.Timedelta(days=last.weekday())).normalize()
    sunday = monday + pd.Timedelta(days=6)
    to_date = last.normalize() < sunday
    end = last.normalize() if to_date else sunday
    return f"{iso[0]}-W{iso[1]:02d}", f"{monday:%Y-%m-%d} to {end:%Y-%m-%d}" + (" (week to date)" if to_date else "")


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
    # lead_scores and lead_flags are state tables: the current picture, each row stamped with the run
    # that last changed it. Scores a week ago come from score_history (a row per change), and flags open
    # at a run are those first raised by then and not closed by then (a closed row keeps its closing run).
    scores = wh.read_typed("SELECT golden_id, score, tier, rep_touches, last_touch_at FROM lead_scores",
                           datetime_columns=("last_touch_at",))
    before = (wh.scores_at(prior)[["golden_id", "score"]].rename(columns={"score": "score_week_ago"})
              if prior else pd.DataFrame(columns=["golden_id", "score_week_ago"]))
    owners = wh.read_typed("SELECT owner_id, name, team, active, deactivated_at FROM owners WHERE run_id = :r",
                           datetime_columns=("deactivated_at",), bool_columns=("active",), r=latest)
    since = _run_id(latest_at - pd.Timedelta(weeks=weeks_of_history))
    from slowburn.warehouse import flag_status_at
    episodes = wh.read("SELECT golden_id, flag, severity, owner_id, status, reason, suggested_action, first_run_id, "
                       "run_id FROM lead_flags WHERE first_run_id <= :r AND (COALESCE(status, 'open') = 'open' "
                       "OR run_id > :s)", r=latest, s=since)
    open_at = {run: flag_status_at(episodes["first_run_id"], episodes["run_id"], episodes["status"], run) == "open"
               for run in runs[runs > since]}
    flags = episodes[open_at[latest].fillna(False).to_numpy(dtype=bool)].drop(columns=["first_run_id", "run_id"])
    flags = flags.reset_index(drop=True)
    trend = pd.DataFrame([{"run_id": run, "flag": flag, "n": int(n)} for run, is_open in open_at.items()
                          for flag, n in episodes.loc[is_open.fillna(False).to_numpy(dtype=bool), "flag"]
                          .value_counts().items()], columns=["run_id", "flag", "n"])
    # The sales queue is a state table: it is this run's only while no later run has replaced it.
    newest = wh.read("SELECT MAX(run_id) AS r FROM run_ledger")["r"].iloc[0]
    queue = (wh.read_typed("SELECT golden_id, owner_id, score, respond_by FROM sales_queue",
                           datetime_columns=("respond_by",)) if newest == latest else None)
    return {"latest_run": latest, "prior_run": prior, "golden": golden, "scores": scores, "before": before,
            "owners": owners, "flags": flags, "flag_trend": trend, "sales_queue": queue}


def build_review(frames: dict, as_of: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Actions, leads, per-rep and per-team frames for the review (pure: no I/O)."""
    as_of = pd.Timestamp(as_of)
    golden = frames["golden"]
    is_open = (golden["status"].isin(OPEN_STATUSES) | golden["status"].isna()).to_numpy(dtype=bool)
    leads = golden[golden["owner_id"].notna().to_numpy(dtype=bool) | is_open].copy()
    leads["owner_id"] = leads["owner_id"].astype("string")
    leads = leads.merge(frames["scores"], on="golden_id", how="left")
    leads = leads.merge(frames["before"], on="golden_id", how="left")
    owners = frames["owners"].drop_duplicates("owner_id")
    known = leads["owner_id"].isin(owners["owner_id"].astype("string"))
    leads = leads.merge(owners[["owner_id", "team"]].astype({"owner_id": "string"}), on="owner_id", how="left")
    leads["rep"] = owner_labels(leads["owner_id"], owners).to_numpy()
    leads["team"] = leads["team"].astype("string").where(known.to_numpy(), "(unknown owner)").fillna("(no team)")
    leads["team"] = leads["team"].mask(leads["owner_id"].isna().to_numpy(), NO_OWNER)
    leads["owner_id"] = leads["owner_id"].fillna("")
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
    leads["is_open"] = (leads["status"].isin(OPEN_STATUSES) | leads["status"].isna()).astype(bool)

    # One next action per lead (flags ranked by severity and value; hot leads to call), ranked per rep.
    queue = frames.get("sales_queue")
    actions = next_actions(flags.assign(owner_id=flags["owner_id"].astype("string").fillna("")) if len(flags)
                           else flags, frames["scores"], queue)
    actions["owner_id"] = actions["owner_id"].astype("string").fillna("")
    info = leads.drop_duplicates("golden_id").set_index("golden_id")
    actions["name"] = actions["golden_id"].map(info["name"])
    actions["company"] = actions["golden_id"].map(info["company"])
    actions["rep"] = owner_labels(actions["owner_id"].replace("", pd.NA), owners).to_numpy()
    leads["next_action"] = leads["golden_id"].map(actions.set_index("golden_id")["action"]).astype("string")
    leads["action_rank"] = leads["golden_id"].map(actions.set_index("golden_id")["rank"]).astype("Float64")
    # Open leads first, those with an action in rank order, then the rest by age.
    leads = leads.sort_values(["team", "rep", "owner_id", "is_open", "action_rank", "age_days"],
                              ascending=[True, True, True, False, True, False], na_position="last",
                              kind="stable").reset_index(drop=True)

    flagsets = pd.DataFrame({
        "converted": leads["status"].eq("converted").fillna(False).astype(int),
        "score_up": (leads["score_trend"] > 0).fillna(False).astype(int),
        "score_down": (leads["score_trend"] < 0).fillna(False).astype(int),
        "leads_with_open_flags": (leads["n_open_flags"] > 0).astype(int),
        "never_contacted": (leads["rep_contacts"] == 0).astype(int),
        "contacts_5_12": leads["rep_contacts"].between(5, 12).astype(int),
    })
    per_owner_actions = actions.groupby("owner_id").size()

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
        out = out[cols].rename_axis(by).reset_index()
        if "owner_id" in by:
            out.insert(out.columns.get_loc("open_flags") + 1, "actions",
                       out["owner_id"].map(per_owner_actions).fillna(0).astype(int))
        return out

    reps = totals(["team", "owner_id", "rep"])
    counts = action_counts(actions)
    agenda = reps[["team", "owner_id", "rep", "open"]].merge(counts, on="owner_id", how="left")
    agenda = agenda.fillna({c: 0 for c in counts.columns if c != "owner_id"})
    agenda = agenda.astype({c: int for c in counts.columns if c != "owner_id"})
    agenda = agenda.sort_values(["actions", "team", "rep"], ascending=[False, True, True], kind="stable")
    return {"leads": leads, "reps": reps, "teams": totals(["team"]), "actions": actions,
            "agenda": agenda.reset_index(drop=True)}


def with_trend(current: pd.DataFrame, previous: pd.DataFrame | None, key: str = "owner_id") -> pd.DataFrame:
    """current with "<column>_change" columns against the previous review's same rows (blank when the
    rep was not in it, or there is no previous review)."""
    out = current.copy()
    cols = [c for c in TREND_COLUMNS if c in out]
    if previous is None or previous.empty or key not in previous:
        for c in cols:
            out[f"{c}_change"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
        return out
    prev = previous.astype({key: "string"}).fillna({key: ""}).drop_duplicates(key).set_index(key)
    for c in cols:
        before = out[key].astype("string").fillna("").map(prev[c]) if c in prev else pd.Series(pd.NA, index=out.index)
        out[f"{c}_change"] = (pd.to_numeric(out[c], errors="coerce")
                              - pd.to_numeric(before, errors="coerce")).astype("Int64")
    return out


def previous_review(out_dir: Path, week: str) -> tuple[str | None, pd.DataFrame | None]:
    """The latest review of an earlier week in out_dir: (its week, its reps.csv)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None, None
    weeks = sorted(p.name for p in out_dir.iterdir() if p.name < week and (p / "reps.csv").is_file())
    if not weeks:
        return None, None
    return weeks[-1], pd.read_csv(out_dir / weeks[-1] / "reps.csv", dtype={"owner_id": "string"},
                                  keep_default_na=False, na_values=[""])


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
            text = s.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M UTC")
        else:
            text = s.astype("string")
        text = text.astype("string").fillna("")
        if not (pd.api.types.is_numeric_dtype(s.dtype) or isinstance(s.dtype, pd.DatetimeTZDtype)):
            for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;")):
                text = text.str.replace(raw, safe, regex=False)
        if col in links:
            text = "<a href=\"" + links[col].astype("string").fillna("") + "\">" + text + "</a>"
        cells = cells + ("<td>" + text + "</td>").astype(object)
    return "<tr>" + cells + "</tr>"


def _html_table(frame: pd.DataFrame, links: dict[str, pd.Series] | None = None) -> str:
    return f"<table>{_header(frame.columns)}{''.join(_row_strings(frame, links))}</table>"


_STYLE = """<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.2em .45em;font-size:12px;
text-align:left}th{background:#f3f3f3}figure{display:inline-block;margin:.5em 1em .5em 0}
figcaption{font-size:12px;color:#555} .muted{color:#666;font-size:12px} .up{color:#b00020} .down{color:#17692f}
</style>"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>{_STYLE}"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def write_weekly_review(wh, out_dir: str | Path, as_of: pd.Timestamp, weeks_of_history: int = 12) -> dict:
    """Write the review of the week the latest run at or before `as_of` covers (see the module docstring)."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    return write_review(load_review_frames(wh, as_of, weeks_of_history), out_dir, as_of)


def _keep_earlier_version(folder: Path) -> list[dict]:
    """Move an existing review of this week under versions/<its generated_at>/ and list every kept one."""
    versions = folder / "versions"
    meta = folder / "review.json"
    if meta.is_file():
        old = json.loads(meta.read_text(encoding="utf-8"))
        stamp = re.sub(r"[^0-9A-Za-z]", "", str(old.get("generated_at") or "unknown"))[:15] or "unknown"
        target = versions / stamp
        n = 1
        while target.exists():
            n += 1
            target = versions / f"{stamp}-{n}"
        target.mkdir(parents=True)
        for item in list(folder.iterdir()):
            if item.name != "versions":
                shutil.move(str(item), str(target / item.name))
    kept = []
    if versions.is_dir():
        for v in sorted(versions.iterdir()):
            m = v / "review.json"
            if m.is_file():
                old = json.loads(m.read_text(encoding="utf-8"))
                kept.append({"folder": f"versions/{v.name}", "generated_at": old.get("generated_at"),
                             "latest_run": old.get("latest_run")})
    return kept


def _change_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Trend columns as "+3" / "-2" / "0" text ("" when there is nothing to compare with)."""
    out = frame.copy()
    for c in [c for c in out.columns if c.endswith("_change")]:
        v = out[c]
        out[c] = v.map(lambda x: "" if pd.isna(x) else f"{int(x):+d}" if x else "0").astype("string")
    return out


def write_review(frames: dict, out_dir: str | Path, as_of: pd.Timestamp) -> dict:
    """Write the review files from load_review_frames' frames (golden, scores, before, owners, flags,
    flag_trend, latest_run, prior_run, and sales_queue when the run's queue is still current)."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    review = build_review(frames, as_of)
    week, covers = week_reviewed(_run_time(frames["latest_run"]))
    out_dir = Path(out_dir)
    folder = out_dir / week
    folder.mkdir(parents=True, exist_ok=True)
    earlier = _keep_earlier_version(folder)
    (folder / "reps").mkdir(parents=True, exist_ok=True)
    prev_week, prev_reps = previous_review(out_dir, week)
    leads, teams, actions = review["leads"], review["teams"], review["actions"]
    reps = with_trend(review["reps"], prev_reps)
    agenda = with_trend(review["agenda"], prev_reps)
    write_csv(leads[LEAD_COLUMNS], folder / "leads.csv")
    write_csv(reps, folder / "reps.csv")
    write_csv(teams, folder / "teams.csv")
    write_csv(actions[ACTION_COLUMNS].sort_values(["owner_id", "rank"], kind="stable"), folder / "actions.csv")
    images = review_plots(review, frames)
    generated_at = pd.Timestamp.now(tz="UTC")
    trend_note = (f"change against the review of {prev_week}" if prev_week
                  else "no earlier review to compare with yet")
    version_note = (f"<p class=\"muted\" id=\"versions\">This review replaces {len(earlier)} earlier version(s) of "
                    f"the same week, kept under " + ", ".join(f"<a href=\"{v['folder']}/review.html\">"
                                                              f"{html.escape(v['folder'])}</a>" for v in earlier)
                    + ".</p>") if earlier else ""

    rep_pages = {}
    shown = [c for c in LEAD_COLUMNS if c not in ("owner_id", "rep", "team")]
    lead_rows = _row_strings(leads[shown]).groupby(leads["owner_id"].to_numpy(), sort=False).agg("".join)
    total_cols = [c for c in reps.columns if c not in ("owner_id", "team")]
    total_rows = pd.Series(_row_strings(_change_cells(reps[total_cols])).to_numpy(), index=reps["owner_id"].to_numpy())
    top = actions[actions["rank"] <= ACTIONS_ON_TOP]
    action_cols = ["rank", "kind", "action", "name", "company", "reason", "score"]
    action_rows = _row_strings(top[action_cols]).groupby(top["owner_id"].to_numpy(), sort=False).agg("".join)
    n_actions = actions.groupby("owner_id").size()
    first = leads.drop_duplicates("owner_id").set_index("owner_id")
    counts = leads.groupby("owner_id", sort=False).size()
    open_counts = leads[leads["is_open"]].groupby("owner_id", sort=False).size()
    lead_head, total_head, action_head = _header(shown), _header(total_cols), _header(action_cols)
    for owner_id, rows_html in lead_rows.items():
        rep, team = first.at[owner_id, "rep"], first.at[owner_id, "team"]
        more = int(n_actions.get(owner_id, 0)) - ACTIONS_ON_TOP
        body = (f"<p><a href=\"../review.html\">back to the team review</a> - team {html.escape(str(team))}, "
                f"week {week} ({covers}), run {frames['latest_run']}</p>"
                f"<h2 id=\"actions\">Act on these first ({int(n_actions.get(owner_id, 0))} leads need an action)</h2>"
                + (f"<table id=\"action-list\">{action_head}{action_rows.get(owner_id, '')}</table>"
                   if owner_id in action_rows.index else "<p>Nothing to act on.</p>")
                + (f"<p class=\"muted\">{more} more in <a href=\"../actions.csv\">actions.csv</a>.</p>" if more > 0
                   else "")
                + f"<h2>Totals ({trend_note})</h2><table>{total_head}{total_rows.get(owner_id, '')}</table>"
                f"<h2>Every lead ({int(counts[owner_id])}, {int(open_counts.get(owner_id, 0))} open), open leads "
                f"first</h2><table>{lead_head}{rows_html}</table>")
        name = f"reps/{_slug(owner_id or 'no_owner')}.html"
        write_text(folder / name, _page(f"Lead review: {rep}", body))
        rep_pages[owner_id] = name

    figures = "".join(f"<figure><img id=\"plot-{k}\" alt=\"{k.replace('_', ' ')}\" "
                      f"src=\"data:image/png;base64,{v}\"><figcaption>{k.replace('_', ' ')}</figcaption></figure>"
                      for k, v in images.items())
    agenda_cols = [c for c in agenda.columns if c not in ("owner_id", "team")]
    body = (f"<p>Week {week} ({covers}); leads as the nightly run {frames['latest_run']} left them; score trend "
            f"against run {frames['prior_run'] or '(none a week earlier)'}; {trend_note}. "
            f"CSV: <a href=\"actions.csv\">next actions</a>, <a href=\"leads.csv\">every lead</a>, "
            f"<a href=\"reps.csv\">per rep</a>, <a href=\"teams.csv\">per team</a>. "
            f"Generated {generated_at:%Y-%m-%d %H:%M UTC}.</p>{version_note}"
            f"<h2 id=\"agenda\">Act on this first: next actions per rep</h2>"
            f"{_html_table(_change_cells(agenda[agenda_cols]), links={'rep': agenda['owner_id'].map(rep_pages)})}"
            f"<h2>Totals per team</h2>{_html_table(teams)}"
            f"<h2>Totals per rep ({trend_note})</h2>"
            f"{_html_table(_change_cells(reps[[c for c in reps.columns if c != 'owner_id']]), links={'rep': reps['owner_id'].map(rep_pages)})}"
            f"<h2>Plots</h2><div id=\"plots\">{figures}</div>")
    write_text(folder / "review.html", _page(f"Weekly lead review {week}", body))
    headline = {
        "week": week, "covers": covers, "as_of": as_of.isoformat(), "generated_at": generated_at.isoformat(),
        "latest_run": frames["latest_run"], "prior_run": frames["prior_run"], "previous_review": prev_week,
        "earlier_versions": earlier,
        "assigned_leads": int((leads["owner_id"] != "").sum()), "unassigned_open_leads": int((leads["owner_id"] == "").sum()),
        "reps": int((reps["owner_id"] != "").sum()), "teams": int(len(teams)),
        "open_flags": int(leads["n_open_flags"].sum()), "actions": int(len(actions)),
        "actions_by_kind": {k: int(v) for k, v in actions["kind"].value_counts().items()},
        "max_actions_on_a_rep_page": int(min(n_actions.max() if len(n_actions) else 0, ACTIONS_ON_TOP)),
        "follow_up_depth": {k: int(v) for k, v in follow_up_depth(leads["rep_contacts"]).items()},
        "plots": sorted(images),
        "paths": {"folder": str(folder.resolve()), "html": str((folder / "review.html").resolve()),
                  "leads_csv": str((folder / "leads.csv").resolve()), "reps_csv": str((folder / "reps.csv").resolve()),
                  "teams_csv": str((folder / "teams.csv").resolve()),
                  "actions_csv": str((folder / "actions.csv").resolve())},
    }
    write_text(folder / "review.json", json.dumps(headline, indent=2, default=str))
    return headline
