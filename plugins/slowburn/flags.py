"""Hygiene flags: the garbage a write-only CRM collects, named so that someone can clean it up."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slowburn.contracts import OPEN_STATUSES
from slowburn.route import active_owners, assign_owners

FLAG_COLUMNS = ["golden_id", "flag", "severity", "owner_id", "evidence", "reason", "suggested_action"]


@dataclass(frozen=True)
class FlagConfig:
    """Every threshold the flag rules use. `unclosed_by_stage` overrides the age per stage, as
    ((stage, days), ...), for the "rotting" rule; stages not named there use unclosed_after_days."""
    unclosed_after_days: int = 45
    unclosed_by_stage: tuple = ()
    sla_hours: float = 1.0
    followup_cadence_days: int = 14
    followup_max_contacts: int = 3
    qualified_stages: tuple = ("sql", "opportunity")
    qualifying_touches: tuple = ("call", "meeting", "demo_request", "rep_email")
    disqualifying_touches: tuple = ("email_bounce", "unsubscribe")

    @classmethod
    def from_mapping(cls, data: dict | None) -> "FlagConfig":
        """Build from a plain mapping (YAML/Airflow params); unknown keys are an error."""
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown flag setting(s): {sorted(unknown)}")
        if isinstance(data.get("unclosed_by_stage"), dict):
            data["unclosed_by_stage"] = tuple(data["unclosed_by_stage"].items())
        for key in ("qualified_stages", "qualifying_touches", "disqualifying_touches"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


# Open-flag lifecycle columns (see track_flags).
LIFECYCLE_COLUMNS = ["status", "opened_at", "closed_at", "first_run_id", "last_seen_run_id"]


def orphaned(golden: pd.DataFrame, owners: pd.DataFrame) -> pd.DataFrame:
    """Open leads with no owner, an owner we do not know, or an owner who left."""
    open_lead = golden["status"].isin(OPEN_STATUSES) | golden["status"].isna()
    known = golden["owner_id"].isin(owners["owner_id"])
    active = golden["owner_id"].isin(active_owners(owners)["owner_id"])
    hit = golden[open_lead & ~active]
    if hit.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    why = np.where(hit["owner_id"].isna(), "no owner",
                   np.where(~known[hit.index], "owner not in the owners table", "owner is deactivated"))
    suggested = assign_owners(hit, owners)["owner_id"].to_numpy()
    return pd.DataFrame({
        "golden_id": hit["golden_id"].to_numpy(),
        "flag": "orphaned",
        "severity": "high",
        "owner_id": hit["owner_id"].to_numpy(),
        "evidence": [json.dumps({"owner_id": None if pd.isna(o) else o, "why": w}) for o, w in zip(hit["owner_id"], why)],
        "reason": [f"open lead with {w}" + ("" if pd.isna(o) else f" ({o})") for o, w in zip(hit["owner_id"], why)],
        "suggested_action": [f"reassign to {s}" if isinstance(s, str) else "reassign: no active rep available"
                             for s in suggested],
    })


def unclosed(golden: pd.DataFrame, scores: pd.DataFrame, now: pd.Timestamp, cfg: FlagConfig) -> pd.DataFrame:
    """Open leads with no activity for longer than the configured age: rotting in the pipeline."""
    df = golden.merge(scores[["golden_id", "last_touch_at"]], on="golden_id", how="left")
    stamps = [pd.to_datetime(df[c], utc=True) for c in ("last_touch_at", "last_activity_at", "created_at")]
    last = pd.to_datetime(pd.concat(stamps, axis=1).max(axis=1), utc=True)
    idle = (now - last) / pd.Timedelta(days=1)
    open_lead = df["status"].isin(OPEN_STATUSES) | df["status"].isna()
    stage = df["stage"] if "stage" in df else pd.Series(pd.NA, index=df.index, dtype="string")
    limit = stage.map(dict(cfg.unclosed_by_stage)).astype("Float64").fillna(cfg.unclosed_after_days)
    hit_mask = (open_lead & (idle > limit)).fillna(False).astype(bool)
    hit = df[hit_mask]
    days = idle[hit_mask].astype(int)  # whole days, for people to read
    lim = limit[hit_mask].astype(int)
    return pd.DataFrame({
        "golden_id": hit["golden_id"].to_numpy(),
        "flag": "unclosed",
        "severity": np.where(days > 2 * lim, "high", "medium"),
        "owner_id": hit["owner_id"].to_numpy(),
        "evidence": _json_rows({"status": hit["status"], "idle_days": days, "last_activity": _stamps(last[hit_mask]),
                                "limit_days": lim}),
        "reason": [f"status '{s}' with no activity for {d} days (limit {m})"
                   for s, d, m in zip(hit["status"], days, lim)],
        "suggested_action": "work the lead or close it out as unqualified",
    }, columns=FLAG_COLUMNS)


REP_CREATED = "rep_created"


def duplicate_for_credit(golden: pd.DataFrame) -> pd.DataFrame:
    """Rep-created leads that duplicate an earlier marketing lead of the same person, under a different owner.

    Reps re-enter marketing's leads to get the credit. A golden record shows it when one of its source
    rows has lead_source 'rep_created' and an owner, and another source row of the same person that was
    not rep-created (a form fill, page visit, email, event or list lead) was created earlier and is
    owned by someone else or no one. Reads the record's `members` (see slowburn.dedupe.survivorship).
    """
    if "members" not in golden.columns or golden.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    members = golden["members"].astype("string")
    cand = golden[members.str.contains('"lead_source":"rep_created"', regex=False).fillna(False).to_numpy()]
    out = []
    for gid, text in zip(cand["golden_id"], cand["members"]):
        rows = json.loads(text)
        best = None
        for rep in rows:
            if rep.get("lead_source") != REP_CREATED or not rep.get("owner_id") or not rep.get("created_at"):
                continue
            earlier = [m for m in rows if m.get("lead_source") not in (None, REP_CREATED) and m.get("created_at")
                       and m["created_at"] < rep["created_at"] and m.get("owner_id") != rep["owner_id"]]
            if earlier:
                first = min(earlier, key=lambda m: m["created_at"])
                best = best or (rep, first)
        if best is None:
            continue
        rep, mkt = best
        days = (pd.Timestamp(rep["created_at"]) - pd.Timestamp(mkt["created_at"])) / pd.Timedelta(days=1)
        mkt_owner = mkt.get("owner_id") or "unassigned"
        out.append({
            "golden_id": gid, "flag": "duplicate_for_credit", "severity": "medium", "owner_id": rep["owner_id"],
            "evidence": json.dumps({"rep_created_lead": rep["key"], "rep_owner_id": rep["owner_id"],
                                    "rep_created_at": rep["created_at"], "marketing_lead": mkt["key"],
                                    "marketing_lead_source": mkt["lead_source"],
                                    "marketing_owner_id": mkt.get("owner_id"),
                                    "marketing_created_at": mkt["created_at"]}),
            "reason": (f"rep-created lead {rep['key']} (owner {rep['owner_id']}) duplicates marketing lead "
                       f"{mkt['key']} ({mkt['lead_source']}, owner {mkt_owner}) created {days:.1f} days earlier"),
            "suggested_action": (f"merge {rep['key']} into {mkt['key']} and keep the attribution with the "
                                 "marketing lead"),
        })
    return pd.DataFrame(out, columns=FLAG_COLUMNS)


REP_TOUCHES = ("call", "rep_email", "meeting")


def touch_facts(touches: pd.DataFrame, cfg: FlagConfig = FlagConfig()) -> pd.DataFrame:
    """Per golden_id: rep contacts (count, first, last), whether any qualifying activity happened,
    and the disqualifying signals seen. `touches` needs golden_id, touch_type and occurred_at."""
    cols = ["n_rep", "first_rep_at", "last_rep_at", "qualified_activity", "disqualifying"]
    if touches is None or touches.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], dtype="string", name="golden_id"))
    t = touches[touches["golden_id"].notna().to_numpy(dtype=bool)]
    codes, ids = pd.factorize(t["golden_id"].astype("string"), sort=False)  # integer keys: fast groupbys
    kind = t["touch_type"].astype("string").fillna("")
    at = pd.to_datetime(t["occurred_at"], utc=True).astype("datetime64[ns, UTC]")
    at = at.to_numpy(dtype="datetime64[ns]")  # UTC wall time, without boxing 5M Timestamps
    rep = kind.isin(REP_TOUCHES).to_numpy(dtype=bool)
    g = pd.Series(at[rep]).groupby(codes[rep], sort=False)
    facts = pd.DataFrame({"n_rep": g.size(), "first_rep_at": g.min(), "last_rep_at": g.max()})
    facts = facts.reindex(np.arange(len(ids)))
    facts["n_rep"] = facts["n_rep"].fillna(0).astype(int)
    for col in ("first_rep_at", "last_rep_at"):
        facts[col] = pd.to_datetime(facts[col]).dt.tz_localize("UTC")
    qual = np.zeros(len(ids), dtype=bool)
    qual[codes[kind.isin(cfg.qualifying_touches).to_numpy(dtype=bool)]] = True
    facts["qualified_activity"] = qual
    dq = pd.Series(pd.NA, index=facts.index, dtype="string")
    for name in sorted(cfg.disqualifying_touches):  # "email_bounce,unsubscribe": the signals seen, sorted
        seen = np.zeros(len(ids), dtype=bool)
        seen[codes[(kind == name).to_numpy(dtype=bool)]] = True
        dq = dq.mask(seen & dq.notna().to_numpy(), dq + "," + name).mask(seen & dq.isna().to_numpy(), name)
    facts["disqualifying"] = dq
    facts.index = pd.Index(ids, name="golden_id")
    keep = (facts["n_rep"] > 0) | facts["qualified_activity"] | facts["disqualifying"].notna()
    facts = facts[keep.to_numpy(dtype=bool)]
    return facts.rename_axis("golden_id")[cols]


def _open(golden: pd.DataFrame) -> pd.Series:
    return (golden["status"].isin(OPEN_STATUSES) | golden["status"].isna()).astype(bool)


def _with_facts(golden: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    df = golden.join(facts, on="golden_id")
    df["n_rep"] = df["n_rep"].fillna(0).astype(int)
    df["qualified_activity"] = df["qualified_activity"].fillna(False).astype(bool)
    return df


def _flags(hit: pd.DataFrame, flag: str, severity, evidence, reason, action) -> pd.DataFrame:
    return pd.DataFrame({"golden_id": hit["golden_id"].to_numpy(), "flag": flag, "severity": severity,
                         "owner_id": hit["owner_id"].to_numpy(), "evidence": evidence, "reason": reason,
                         "suggested_action": action}, columns=FLAG_COLUMNS)


def _iso(ts) -> str | None:
    return None if pd.isna(ts) else pd.Timestamp(ts).isoformat()


def _json_text(values) -> np.ndarray:
    """Each value as JSON text, encoding every distinct value once (enums, counts, stamps repeat)."""
    if np.isscalar(values) or values is None:
        return json.dumps(values.item() if hasattr(values, "item") else values)
    arr = pd.Series(list(values) if isinstance(values, list) else pd.Series(values).to_numpy(), dtype=object)
    codes, uniq = pd.factorize(arr, use_na_sentinel=True)
    enc = [json.dumps(u.item() if hasattr(u, "item") else u) for u in uniq]
    return np.array(enc + ["null"], dtype=object)[codes]


def _json_rows(fields: dict) -> list[str]:
    """One JSON object per row from column-like values (or scalars), built column-wise: json.dumps per
    row is the slowest part of flagging a million leads."""
    out = None
    for i, (key, values) in enumerate(fields.items()):
        part = ("{" if i == 0 else ", ") + json.dumps(key) + ": " + _json_text(values)
        out = part if out is None else out + part
    return list(out + "}")


def _stamps(values) -> list:
    """str(Timestamp) for a whole column at once ("2026-08-01 00:00:00+00:00"; "NaT" for missing)."""
    s = pd.Series(pd.to_datetime(values, utc=True))
    return s.dt.strftime("%Y-%m-%d %H:%M:%S+00:00").fillna("NaT").tolist()


def _isos(values) -> list:
    """ISO-8601 text (or None) for a whole column at once: per-row Timestamp.isoformat is slow."""
    s = pd.Series(pd.to_datetime(values, utc=True))
    text = s.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return [None if pd.isna(v) else v for v in text.to_numpy(dtype=object)]


def worked_not_closed(golden: pd.DataFrame, facts: pd.DataFrame, cfg: FlagConfig) -> pd.DataFrame:
    """Open leads a rep worked (rep contacts) that show a disqualifying signal: a bounce, an
    unsubscribe, an email opt-out or a disqualified stage. Worked, found unqualified, never closed."""
    df = _with_facts(golden, facts)
    opt_out = df["email_opt_out"].fillna(False).astype(bool) if "email_opt_out" in df else False
    stage_dq = (df["stage"] == "disqualified").fillna(False).astype(bool) if "stage" in df else False
    signal = df["disqualifying"].notna() | opt_out | stage_dq
    hit = df[_open(df) & (df["n_rep"] > 0) & signal]
    if hit.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    sig = []
    for d, o, s in zip(hit["disqualifying"], hit.get("email_opt_out", pd.Series(False, index=hit.index)),
                       hit.get("stage", pd.Series(None, index=hit.index))):
        parts = [] if pd.isna(d) else str(d).split(",")
        if o is True or (not pd.isna(o) and bool(o)):
            parts.append("email_opt_out")
        if not pd.isna(s) and s == "disqualified":
            parts.append("stage disqualified")
        sig.append(parts)
    return _flags(hit, "worked_not_closed", "medium",
                  [json.dumps({"status": st, "rep_contacts": int(n), "signals": p})
                   for st, n, p in zip(hit["status"], hit["n_rep"], sig)],
                  [f"worked ({n} rep contact{'s' if n != 1 else ''}) and {', '.join(p)}, but status is still '{st}'"
                   for st, n, p in zip(hit["status"], hit["n_rep"], sig)],
                  "close the lead out as unqualified")


def stage_inflation(golden: pd.DataFrame, facts: pd.DataFrame, cfg: FlagConfig) -> pd.DataFrame:
    """Open leads in a qualified stage with no qualifying activity at all (no call, meeting, rep email
    or demo request): moved up the funnel without being qualified."""
    df = _with_facts(golden, facts)
    hit = df[_open(df) & df["stage"].isin(cfg.qualified_stages).fillna(False).astype(bool) & ~df["qualified_activity"]]
    return _flags(hit, "stage_inflation", "high",
                  [json.dumps({"stage": s, "status": st, "qualifying_activities": 0}) for s, st in
                   zip(hit["stage"], hit["status"])],
                  [f"stage '{s}' with no call, meeting, rep email or demo request on record" for s in hit["stage"]],
                  "requalify the lead or move it back to the stage its activity supports")


def stale_status(golden: pd.DataFrame, outcomes: pd.DataFrame | None) -> pd.DataFrame:
    """Open leads whose deal already closed (an outcome won or lost is on record): the status never moved.

    `outcomes` needs golden_id, outcome and closed_at (the source leads' outcomes mapped to golden ids).
    """
    if outcomes is None or outcomes.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    o = outcomes[outcomes["golden_id"].notna() & outcomes["outcome"].isin(["won", "lost"])]
    o = o.sort_values("closed_at", na_position="first").drop_duplicates("golden_id", keep="last")
    df = golden.merge(o[["golden_id", "outcome", "closed_at"]], on="golden_id", how="inner")
    hit = df[_open(df)]
    return _flags(hit, "stale_status", np.where(hit["outcome"] == "won", "high", "medium"),
                  [json.dumps({"status": st, "outcome": oc, "closed_at": c}) for st, oc, c in
                   zip(hit["status"], hit["outcome"], _isos(hit["closed_at"]))],
                  [f"deal {oc} on {c or 'an unknown date'} but the lead's status is still '{st}'"
                   for st, oc, c in zip(hit["status"], hit["outcome"], _isos(hit["closed_at"]))],
                  [f"set the status to {'converted' if oc == 'won' else 'closed'}" for oc in hit["outcome"]])


def sla_breach(golden: pd.DataFrame, facts: pd.DataFrame, now: pd.Timestamp, cfg: FlagConfig) -> pd.DataFrame:
    """Open, assigned leads whose first rep touch came later than the SLA after creation, or never."""
    df = _with_facts(golden, facts)
    sla = pd.Timedelta(hours=cfg.sla_hours)
    created = pd.to_datetime(df["created_at"], utc=True)
    first = pd.to_datetime(df["first_rep_at"], utc=True)
    late = first.isna() | (first - created > sla)
    hit_mask = (_open(df) & df["owner_id"].notna() & (created <= now - sla) & late).fillna(False).astype(bool)
    hit = df[hit_mask]
    c, f = created[hit_mask], first[hit_mask]
    hours = ((f - c) / pd.Timedelta(hours=1)).round(1).astype(object).where(f.notna(), None).tolist()
    c_iso, f_iso = _isos(c), _isos(f)
    return _flags(hit, "sla_breach", np.where(f.isna(), "high", "medium"),
                  _json_rows({"created_at": c_iso, "first_rep_touch_at": f_iso, "sla_hours": cfg.sla_hours,
                              "hours_to_first_touch": hours}),
                  [f"no rep contact since creation ({a})" if b is None else
                   f"first rep contact {h} h after creation (SLA {cfg.sla_hours:g} h)"
                   for a, b, h in zip(c_iso, f_iso, hours)],
                  np.where(f.isna(), "contact the lead now", "review the response time with the rep"))


def dropped_followup(golden: pd.DataFrame, facts: pd.DataFrame, now: pd.Timestamp, cfg: FlagConfig) -> pd.DataFrame:
    """Open leads with 1 to `followup_max_contacts` rep contacts and no rep contact for longer than the
    cadence: most sales close on the 5th to 12th contact, and these stopped early."""
    df = _with_facts(golden, facts)
    last = pd.to_datetime(df["last_rep_at"], utc=True)
    silent = (now - last) / pd.Timedelta(days=1)
    mask = (_open(df) & df["n_rep"].between(1, cfg.followup_max_contacts)
            & (silent > cfg.followup_cadence_days)).fillna(False).astype(bool)
    hit = df[mask]
    days = silent[mask].astype(int)
    return _flags(hit, "dropped_followup", "medium",
                  _json_rows({"rep_contacts": hit["n_rep"], "last_rep_touch_at": _isos(last[mask]),
                              "silent_days": days, "cadence_days": cfg.followup_cadence_days}),
                  [f"{n} rep contact{'s' if n != 1 else ''}, then silence for {d} days (cadence "
                   f"{cfg.followup_cadence_days})" for n, d in zip(hit["n_rep"], days)],
                  "follow up: most deals close on the 5th to 12th contact")


def flag_leads(golden: pd.DataFrame, scores: pd.DataFrame, owners: pd.DataFrame, now: pd.Timestamp,
               cfg: FlagConfig = FlagConfig(), touches: pd.DataFrame | None = None,
               outcomes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every flag rule over the golden leads. The touch rules (worked_not_closed, stage_inflation,
    sla_breach, dropped_followup) run when `touches` (golden_id, touch_type, occurred_at: the whole
    history) is given; stale_status when `outcomes` (golden_id, outcome, closed_at) is."""
    frames = [orphaned(golden, owners), unclosed(golden, scores, now, cfg), duplicate_for_credit(golden)]
    if touches is not None:
        facts = touch_facts(touches, cfg)
        frames += [worked_not_closed(golden, facts, cfg), stage_inflation(golden, facts, cfg),
                   sla_breach(golden, facts, now, cfg), dropped_followup(golden, facts, now, cfg)]
    if outcomes is not None:
        frames.append(stale_status(golden, outcomes))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in FLAG_COLUMNS})
    return pd.concat(frames, ignore_index=True)[FLAG_COLUMNS]


def track_flags(previous: pd.DataFrame | None, current: pd.DataFrame, as_of: pd.Timestamp, run_id: str,
                keep_closed: bool = True) -> pd.DataFrame:
    """De-duplicate flags across runs: carry each open flag forward until its cause is gone, then close it.

    `previous` is the flag record the previous run left (FLAG_COLUMNS + LIFECYCLE_COLUMNS; None or empty
    on the first run), `current` tonight's flag_leads output. A (golden_id, flag) that is open before
    and found again stays open with its first opened_at and first_run_id and tonight's evidence; a new
    one opens at `as_of`; an open one not found tonight is closed at `as_of` with its last evidence.
    Flags closed by earlier runs are kept when keep_closed (a whole-history record), else dropped (each
    run's rows are then its open flags plus the ones it closed). Counting open rows per run, or
    opened_at/closed_at per day, gives the trend.
    """
    as_of = pd.Timestamp(as_of)
    key = ["golden_id", "flag"]
    cur = current[FLAG_COLUMNS].drop_duplicates(key).copy()
    if previous is None or previous.empty:
        prev_open = pd.DataFrame(columns=FLAG_COLUMNS + LIFECYCLE_COLUMNS)
        prev_closed = prev_open
    else:
        prev = previous.copy()
        is_open = (prev["status"] == "open").fillna(False).astype(bool) & prev["closed_at"].isna()
        prev_open, prev_closed = prev[is_open], prev[~is_open]
    carried = cur.merge(prev_open[key + ["opened_at", "first_run_id"]], on=key, how="left")
    new = carried["first_run_id"].isna()
    carried["opened_at"] = pd.to_datetime(carried["opened_at"], utc=True).where(~new, as_of)
    carried["first_run_id"] = carried["first_run_id"].astype(object).where(~new, run_id)
    carried["status"] = "open"
    carried["closed_at"] = pd.NaT
    carried["last_seen_run_id"] = run_id
    gone = prev_open.merge(cur[key], on=key, how="left", indicator=True)
    gone = gone[gone["_merge"] == "left_only"].drop(columns="_merge")
    gone = gone.assign(status="closed", closed_at=as_of)
    parts = [carried, gone] + ([prev_closed] if keep_closed else [])
    parts = [p[FLAG_COLUMNS + LIFECYCLE_COLUMNS] for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in FLAG_COLUMNS + LIFECYCLE_COLUMNS}).assign(
            opened_at=pd.Series(dtype="datetime64[ns, UTC]"), closed_at=pd.Series(dtype="datetime64[ns, UTC]"))
    out = pd.concat(parts, ignore_index=True)
    for col in ("opened_at", "closed_at"):
        out[col] = pd.to_datetime(out[col], utc=True).astype("datetime64[ns, UTC]")
    return out
