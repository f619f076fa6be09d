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
    unclosed_after_days: int = 45


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
    hit_mask = open_lead & (idle > cfg.unclosed_after_days)
    hit = df[hit_mask]
    days = idle[hit_mask].astype(int)  # whole days, for people to read
    return pd.DataFrame({
        "golden_id": hit["golden_id"].to_numpy(),
        "flag": "unclosed",
        "severity": np.where(days > 2 * cfg.unclosed_after_days, "high", "medium"),
        "owner_id": hit["owner_id"].to_numpy(),
        "evidence": [json.dumps({"status": s, "idle_days": int(d), "last_activity": str(l)})
                     for s, d, l in zip(hit["status"], days, last[hit_mask])],
        "reason": [f"status '{s}' with no activity for {d} days (limit {cfg.unclosed_after_days})"
                   for s, d in zip(hit["status"], days)],
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


def flag_leads(golden: pd.DataFrame, scores: pd.DataFrame, owners: pd.DataFrame, now: pd.Timestamp,
               cfg: FlagConfig = FlagConfig()) -> pd.DataFrame:
    frames = [orphaned(golden, owners), unclosed(golden, scores, now, cfg), duplicate_for_credit(golden)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in FLAG_COLUMNS})
    return pd.concat(frames, ignore_index=True)[FLAG_COLUMNS]
