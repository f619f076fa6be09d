"""Hygiene flags: the garbage a write-only CRM collects, named so that someone can clean it up."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slowburn.contracts import OPEN_STATUSES
from slowburn.arrowkeys import is_in, positions
from slowburn.route import RoutingConfig, active_owners, assign_owners, working_hours_between_ns
from slowburn.route import _ns  # timestamps as int64 ns UTC: routing's conversion, so deadlines compare exactly

FLAG_COLUMNS = ["golden_id", "flag", "severity", "owner_id", "evidence", "reason", "suggested_action"]


@dataclass(frozen=True)
class FlagConfig:
    """Every threshold the flag rules use. `unclosed_by_stage` overrides the age per stage, as
    ((stage, days), ...), for the "rotting" rule; stages not named there use unclosed_after_days."""
    unclosed_after_days: int = 45
    unclosed_by_stage: tuple = ()
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
        if "sla_hours" in unknown:
            raise ValueError("unknown flag setting 'sla_hours': the SLA is the routing one, set routing.sla_hours "
                             "in the ripeness YAML (include/config/ripeness.yaml)")
        if unknown:
            raise ValueError(f"unknown flag setting(s): {sorted(unknown)}")
        if isinstance(data.get("unclosed_by_stage"), dict):
            data["unclosed_by_stage"] = tuple(data["unclosed_by_stage"].items())
        for key in ("qualified_stages", "qualifying_touches", "disqualifying_touches"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


# The golden record columns the rules read; the flag step reads only these (not names, addresses, provenance).
FLAG_GOLDEN_COLUMNS = ("golden_id", "status", "owner_id", "stage", "country_code", "created_at", "last_activity_at",
                       "email_opt_out", "members")
# The queue columns sla_breach reads.
FLAG_QUEUE_COLUMNS = ("golden_id", "owner_id", "queued_at", "ripened_at", "respond_by", "sla_missed", "sla_missed_at",
                      "missed_owner_id")

# Open-flag lifecycle columns (see track_flags).
LIFECYCLE_COLUMNS = ["status", "opened_at", "closed_at", "first_run_id", "last_seen_run_id"]


def orphaned(golden: pd.DataFrame, owners: pd.DataFrame, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Open leads with no owner, an owner we do not know, or an owner who left.

    The suggested rep comes from the routing round-robin; a suggestion an earlier night made
    (`previous`: the open flags, evidence carrying suggested_owner_id) stands while that rep is
    active, so an open flag does not suggest someone else every night.
    """
    open_lead = golden["status"].isin(OPEN_STATUSES) | golden["status"].isna()
    known = golden["owner_id"].isin(owners["owner_id"])
    active = golden["owner_id"].isin(active_owners(owners)["owner_id"])
    hit = golden[open_lead & ~active]
    if hit.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    why = np.where(hit["owner_id"].isna(), "no owner",
                   np.where(~known[hit.index], "owner not in the owners table", "owner is deactivated"))
    suggested = pd.Series(assign_owners(hit, owners)["owner_id"].to_numpy(), dtype="string")
    if previous is not None and len(previous):
        before = previous[previous["flag"] == "orphaned"]
        # Evidence repeats (the same owner, reason and suggestion): each distinct text is parsed once.
        codes, texts = pd.factorize(before["evidence"].to_numpy(dtype=object))
        parsed = [isinstance(e, str) and e.startswith("{") for e in texts]
        suggestion = np.array([json.loads(e).get("suggested_owner_id") if ok else None
                               for e, ok in zip(texts, parsed)] + [None], dtype=object)
        made = pd.Series(suggestion[codes], dtype="string")  # codes -1 (no evidence): the trailing None
        at = positions(hit["golden_id"], before["golden_id"])
        earlier = made.take(np.maximum(at, 0)).where(at >= 0).reset_index(drop=True) if len(made) else \
            pd.Series(pd.NA, index=range(len(hit)), dtype="string")
        kept = earlier.isin(active_owners(owners)["owner_id"]).to_numpy(dtype=bool, na_value=False)
        suggested = earlier.where(kept, suggested)
    # Texts per distinct (owner, why) and per distinct suggestion, not per lead: 135k orphans at a million.
    o_codes, o_uniq = pd.factorize(hit["owner_id"].astype("string"))  # a missing owner: -1
    w_codes, w_uniq = pd.factorize(why)
    pair_codes, pairs = pd.factorize((o_codes.astype(np.int64) + 1) * len(w_uniq) + w_codes)
    reason = np.array([f"open lead with {w_uniq[p % len(w_uniq)]}"
                       + ("" if p // len(w_uniq) == 0 else f" ({o_uniq[p // len(w_uniq) - 1]})") for p in pairs],
                      dtype=object)
    names = dict(zip(owners["owner_id"], owners["name"])) if "name" in owners else {}
    s_codes, s_uniq = pd.factorize(suggested, use_na_sentinel=True)
    action = np.array([f"reassign to {names.get(s) or s}" + (f" ({s})" if names.get(s) else "") for s in s_uniq]
                      + ["reassign: no active rep available"], dtype=object)
    return pd.DataFrame({
        "golden_id": hit["golden_id"].to_numpy(),
        "flag": "orphaned",
        "severity": "high",
        "owner_id": hit["owner_id"].to_numpy(),
        "evidence": _json_rows({"owner_id": hit["owner_id"], "why": why,
                                "suggested_owner_id": suggested.astype(object).where(suggested.notna(), None)}),
        "reason": reason[pair_codes],
        "suggested_action": action[s_codes],
    })


def unclosed(golden: pd.DataFrame, scores: pd.DataFrame, now: pd.Timestamp, cfg: FlagConfig) -> pd.DataFrame:
    """Open leads with no activity for longer than the configured age: rotting in the pipeline."""
    df = golden.merge(_keyed(scores[["golden_id", "last_touch_at"]], golden), on="golden_id", how="left")
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
        # Evidence and reason name the day of the last activity, not the days since it: they stay the
        # same every night the flag stays open, so the state table keeps the row instead of rewriting it.
        "evidence": _json_rows({"status": hit["status"], "last_activity": _stamps(last[hit_mask]),
                                "limit_days": lim}),
        "reason": [f"status '{s}' with no activity since {d[:10]} (limit {m} days)"
                   for s, d, m in zip(hit["status"], _stamps(last[hit_mask]), lim)],
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


def _keyed(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """`frame` with golden_id in `like`'s dtype: empty frames read from Parquet type it differently."""
    return frame.astype({"golden_id": like["golden_id"].dtype})


def _open(golden: pd.DataFrame) -> pd.Series:
    return (golden["status"].isin(OPEN_STATUSES) | golden["status"].isna()).astype(bool)


def _with_facts(golden: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    """golden with its touch facts; a frame that has them already (flag_leads joins once for the three
    touch rules) as is."""
    if "n_rep" in golden:
        return golden
    facts = facts.set_axis(facts.index.astype("string"))  # an empty night's index is not text otherwise
    df = golden.join(facts, on=golden["golden_id"].astype("string"))
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


def _utc_text(values, sep: str, missing) -> list:
    """'YYYY-MM-DD<sep>HH:MM:SS+00:00' per timestamp (`missing` for NaT), assembled as numpy characters:
    strftime over half a million flags takes seconds."""
    ns = pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[ns, UTC]").to_numpy(dtype="datetime64[ns]")
    chars = np.empty((len(ns), 25), dtype="<U1")
    chars[:, :19] = np.datetime_as_string(ns, unit="s").astype("<U19").view("<U1").reshape(-1, 19)
    chars[:, 10] = sep
    chars[:, 19:] = list("+00:00")
    out = chars.view("<U25").ravel().astype(object)
    out[np.isnat(ns)] = missing
    return out.tolist()


def _stamps(values) -> list:
    """str(Timestamp) for a whole column at once ("2026-08-01 00:00:00+00:00"; "NaT" for missing)."""
    return _utc_text(values, " ", "NaT")


def _isos(values) -> list:
    """ISO-8601 text (or None) for a whole column at once: per-row Timestamp.isoformat is slow."""
    return _utc_text(values, "T", None)


def worked_not_closed(golden: pd.DataFrame, facts: pd.DataFrame, cfg: FlagConfig) -> pd.DataFrame:
    """Open leads a rep worked (rep contacts) that show a disqualifying signal: a bounce, an
    unsubscribe, an email opt-out or a disqualified stage. Worked, found unqualified, never closed."""
    df = _with_facts(golden, facts)
    touch_signal = df["disqualifying"].astype("string")
    opt_out = _bool_column(df, "email_opt_out")
    stage_dq = _text_column(df, "stage").eq("disqualified").fillna(False).to_numpy(dtype=bool)
    signal = touch_signal.notna().to_numpy(dtype=bool) | opt_out | stage_dq
    mask = _open(df).to_numpy(dtype=bool) & (df["n_rep"] > 0).to_numpy(dtype=bool) & signal
    hit = df[mask]
    if hit.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    sig = [[] if pd.isna(d) else str(d).split(",") for d in touch_signal[mask]]
    for parts, o, s in zip(sig, opt_out[mask], stage_dq[mask]):
        parts += (["email_opt_out"] if o else []) + (["stage disqualified"] if s else [])
    return _flags(hit, "worked_not_closed", "medium",
                  [json.dumps({"status": st, "rep_contacts": int(n), "signals": p})
                   for st, n, p in zip(hit["status"], hit["n_rep"], sig)],
                  [f"worked ({n} rep contact{'s' if n != 1 else ''}) and {', '.join(p)}, but status is still '{st}'"
                   for st, n, p in zip(hit["status"], hit["n_rep"], sig)],
                  "close the lead out as unqualified")


def _text_column(df: pd.DataFrame, name: str) -> pd.Series:
    """A text column as nullable strings (all null when the column is absent): comparisons give NA, not errors."""
    if name not in df:
        return pd.Series(pd.NA, index=df.index, dtype="string")
    return df[name].astype("string")


def _bool_column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df:
        return np.zeros(len(df), dtype=bool)
    return df[name].astype("boolean").fillna(False).to_numpy(dtype=bool)


def stage_inflation(golden: pd.DataFrame, facts: pd.DataFrame, cfg: FlagConfig) -> pd.DataFrame:
    """Open leads in a qualified stage with no qualifying activity at all (no call, meeting, rep email
    or demo request): moved up the funnel without being qualified."""
    df = _with_facts(golden, facts)
    stage = _text_column(df, "stage")
    hit = df[(_open(df) & stage.isin(cfg.qualified_stages).fillna(False).astype(bool)
              & ~df["qualified_activity"]).to_numpy(dtype=bool)]
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
    df = golden.merge(_keyed(o[["golden_id", "outcome", "closed_at"]], golden), on="golden_id", how="inner")
    hit = df[_open(df)]
    closed = _isos(hit["closed_at"])
    return _flags(hit, "stale_status", np.where(hit["outcome"] == "won", "high", "medium"),
                  [json.dumps({"status": st, "outcome": oc, "closed_at": c}) for st, oc, c in
                   zip(hit["status"], hit["outcome"], closed)],
                  [f"deal {oc} on {c[:10] if c else 'an unknown date'} but the lead's status is still '{st}'"
                   for st, oc, c in zip(hit["status"], hit["outcome"], closed)],
                  [f"set the status to {'converted' if oc == 'won' else 'closed'}" for oc in hit["outcome"]])


def _first_rep_touch_since(touches: pd.DataFrame | None, since: pd.DataFrame) -> pd.Series:
    """Per golden_id in `since` (golden_id, since_ns): the first rep contact at or after its moment
    (int64 ns; NaT's value when none). Only the queued leads' touches are looked at."""
    nat = np.iinfo(np.int64).min
    out = pd.Series(nat, index=pd.Index(since["golden_id"].astype("string"), name="golden_id"), dtype=np.int64)
    if touches is None or touches.empty or since.empty:
        return out
    kind = touches["touch_type"].astype("string")
    gid = touches["golden_id"].astype("string")
    keep = (kind.isin(REP_TOUCHES) & gid.isin(out.index)).fillna(False).to_numpy(dtype=bool)
    t = pd.DataFrame({"golden_id": gid[keep].to_numpy(),
                      "at": _ns(touches.loc[keep, "occurred_at"])})
    t = t.merge(pd.DataFrame({"golden_id": out.index, "since": since["since_ns"].to_numpy()}), on="golden_id")
    t = t[t["at"] >= t["since"]]
    first = t.groupby("golden_id")["at"].min()
    out.loc[first.index] = first.to_numpy()
    return out


def sla_breach(golden: pd.DataFrame, touches: pd.DataFrame | None, now: pd.Timestamp, routing: RoutingConfig,
               sales_queue: pd.DataFrame | None, nurture_queue: pd.DataFrame | None = None) -> pd.DataFrame:
    """Leads sent to sales whose respond-by passed before a rep contacted them: the routing rule itself.

    Only leads that entered the sales queue have an SLA. Routing gives each one a respond-by in
    working hours from its creation or ripening (slowburn.route); a lead is in breach when that moment
    has passed with no rep contact since it ripened (high: call it now), or the first contact came
    after it (low: the lead was worked, the response time is a coaching point). A lead routing already
    dropped to nurture for a missed SLA stays flagged (medium) until it ripens again. Lateness is
    counted in the same working hours as the deadline.
    """
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    frames = []
    open_ids = golden.loc[_open(golden).to_numpy(dtype=bool), "golden_id"].astype("string")
    if sales_queue is not None and len(sales_queue):
        q = sales_queue[is_in(sales_queue["golden_id"], open_ids)]
        respond = _ns(q["respond_by"])
        ripened = _ns(q["ripened_at"] if "ripened_at" in q else q["queued_at"])
        due = respond < now.value
        q, respond, ripened = q[due], respond[due], ripened[due]
        first = _first_rep_touch_since(touches, pd.DataFrame({"golden_id": q["golden_id"].astype("string"),
                                                              "since_ns": ripened})).to_numpy()
        nat = np.iinfo(np.int64).min
        never = first == nat
        late = ~never & (first > respond)
        hit = never | late
        q, respond, ripened, first, never = q[hit], respond[hit], ripened[hit], first[hit], never[hit]
        waited = working_hours_between_ns(respond, np.where(never, now.value, first), routing)
        respond_iso = _isos(pd.to_datetime(respond, utc=True))
        first_iso = [None if n else v for n, v in zip(never, _isos(pd.to_datetime(first, utc=True)))]
        hours = np.round(waited, 1)
        frames.append(pd.DataFrame({
            "golden_id": q["golden_id"].to_numpy(), "flag": "sla_breach",
            "severity": np.where(never, "high", "low"), "owner_id": q["owner_id"].to_numpy(),
            "evidence": _json_rows({"queue": "sales", "ripened_at": _isos(pd.to_datetime(ripened, utc=True)),
                                    "respond_by": respond_iso, "first_rep_touch_at": first_iso,
                                    "working_hours_late": hours, "sla_working_hours": routing.sla_hours}),
            "reason": [f"hot lead not contacted: respond-by {r} passed {h:g} working hours ago" if n else
                       f"first rep contact {h:g} working hours after the respond-by ({r})"
                       for n, r, h in zip(never, respond_iso, hours)],
            "suggested_action": np.where(never, "call now: the lead is past its response deadline",
                                         "review the response time with the rep"),
        }, columns=FLAG_COLUMNS))
    if nurture_queue is not None and len(nurture_queue) and "sla_missed" in nurture_queue:
        n = nurture_queue[nurture_queue["sla_missed"].astype("boolean").fillna(False).to_numpy(dtype=bool)
                          & is_in(nurture_queue["golden_id"], open_ids)]
        missed_iso = _isos(n["sla_missed_at"])
        missed_owner = n["missed_owner_id"].astype("string").to_numpy(dtype=object, na_value=None) \
            if "missed_owner_id" in n else np.full(len(n), None, dtype=object)
        row = positions(n["golden_id"], golden["golden_id"])  # each lead's owner (first record)
        owner_now = np.where(row >= 0, golden["owner_id"].to_numpy(dtype=object)[np.maximum(row, 0)], None) \
            if len(golden) else np.full(len(n), None, dtype=object)
        owner = np.where(pd.isna(missed_owner), owner_now, missed_owner)
        frames.append(pd.DataFrame({
            "golden_id": n["golden_id"].to_numpy(), "flag": "sla_breach", "severity": "medium",
            "owner_id": owner,
            "evidence": _json_rows({"queue": "nurture", "respond_by": missed_iso, "missed_owner_id": missed_owner,
                                    "sla_working_hours": routing.sla_hours}),
            "reason": [f"sent to sales, not contacted by its respond-by ({m}); moved to nurture" for m in missed_iso],
            "suggested_action": "review the missed hot lead with the rep; it returns to sales when it shows new interest",
        }, columns=FLAG_COLUMNS))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FLAG_COLUMNS)


def dropped_followup(golden: pd.DataFrame, facts: pd.DataFrame, now: pd.Timestamp, cfg: FlagConfig) -> pd.DataFrame:
    """Open leads with 1 to `followup_max_contacts` rep contacts and no rep contact for longer than the
    cadence: most sales close on the 5th to 12th contact, and these stopped early."""
    df = _with_facts(golden, facts)
    last = pd.to_datetime(df["last_rep_at"], utc=True)
    silent = (now - last) / pd.Timedelta(days=1)
    mask = (_open(df) & df["n_rep"].between(1, cfg.followup_max_contacts)
            & (silent > cfg.followup_cadence_days)).fillna(False).astype(bool)
    hit = df[mask]
    last_iso = _isos(last[mask])
    return _flags(hit, "dropped_followup", "medium",
                  _json_rows({"rep_contacts": hit["n_rep"], "last_rep_touch_at": last_iso,
                              "cadence_days": cfg.followup_cadence_days}),
                  [f"{n} rep contact{'s' if n != 1 else ''}, then silence since {d[:10]} (cadence "
                   f"{cfg.followup_cadence_days} days)" for n, d in zip(hit["n_rep"], last_iso)],
                  "follow up: most deals close on the 5th to 12th contact")


def flag_leads(golden: pd.DataFrame, scores: pd.DataFrame, owners: pd.DataFrame, now: pd.Timestamp,
               cfg: FlagConfig = FlagConfig(), touches: pd.DataFrame | None = None,
               outcomes: pd.DataFrame | None = None, sales_queue: pd.DataFrame | None = None,
               nurture_queue: pd.DataFrame | None = None, routing: RoutingConfig | None = None,
               previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every flag rule over the golden leads. The touch rules (worked_not_closed, stage_inflation,
    dropped_followup) run when `touches` (golden_id, touch_type, occurred_at: the whole history) is
    given; stale_status when `outcomes` (golden_id, outcome, closed_at) is; sla_breach when tonight's
    queues (slowburn.route output) are, with the routing calendar that set their deadlines.
    `previous`: the open flags before tonight (see orphaned)."""
    frames = [orphaned(golden, owners, previous), unclosed(golden, scores, now, cfg), duplicate_for_credit(golden)]
    if touches is not None:
        facts = touch_facts(touches, cfg)
        worked = _with_facts(golden, facts)
        frames += [worked_not_closed(worked, facts, cfg), stage_inflation(worked, facts, cfg),
                   dropped_followup(worked, facts, now, cfg)]
    if sales_queue is not None or nurture_queue is not None:
        frames.append(sla_breach(golden, touches, now, routing or RoutingConfig(), sales_queue, nurture_queue))
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


# ---------------------------------------------------------------------------------------------- actions
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
# Within a severity, the flag whose action is worth most first: a hot lead waiting for a call beats a
# stale status, which beats housekeeping.
FLAG_PRIORITY = ("sla_breach", "stale_status", "orphaned", "dropped_followup", "stage_inflation",
                 "worked_not_closed", "unclosed", "duplicate_for_credit")
# What a manager asks the rep to do, in one or two words, per flag (sla_breach without contact: call now).
ACTION_KIND = {"sla_breach": "call now", "stale_status": "update status", "orphaned": "reassign",
               "dropped_followup": "follow up", "stage_inflation": "requalify", "worked_not_closed": "close out",
               "unclosed": "work or close", "duplicate_for_credit": "merge duplicate"}
ACTION_COLUMNS = ["golden_id", "owner_id", "kind", "action", "flag", "severity", "score", "reason",
                  "other_flags", "respond_by", "rank"]


def next_actions(flags: pd.DataFrame, scores: pd.DataFrame | None = None,
                 sales_queue: pd.DataFrame | None = None) -> pd.DataFrame:
    """One suggested action per lead: its open flags ranked by severity, then by what the flag is
    worth (FLAG_PRIORITY), then by the lead's score; hot leads in the sales queue with no flag get
    "call" before their respond-by. `rank` orders every action of a rep (1 = do this first).

    flags: lead_flags rows (open ones are used; rows without a status count as open); scores:
    golden_id, score; sales_queue: golden_id, owner_id, score, respond_by.
    """
    f = flags
    if "status" in f:
        f = f[f["status"].astype("string").fillna("open").eq("open").to_numpy(dtype=bool)]
    f = f[["golden_id", "flag", "severity", "owner_id", "reason", "suggested_action"]].copy()
    f["golden_id"] = f["golden_id"].astype("string").astype(object)  # hash lookups, not Arrow list scans
    late_only = (f["flag"].eq("sla_breach") & f["severity"].eq("low")).to_numpy(dtype=bool)
    f["kind"] = f["flag"].map(ACTION_KIND).where(~late_only, "coach response time").fillna("review")
    f["action"] = f["suggested_action"]
    f["respond_by"] = pd.NaT
    if sales_queue is not None and len(sales_queue):
        queued = sales_queue["golden_id"].astype("string").astype(object)
        q = sales_queue[~queued.isin(f["golden_id"].unique()).to_numpy(dtype=bool)]
        respond = pd.to_datetime(q["respond_by"], utc=True)
        f = pd.concat([f, pd.DataFrame({
            "golden_id": q["golden_id"].astype("string").astype(object).to_numpy(), "flag": "sales_queue",
            "severity": "high",
            "owner_id": q["owner_id"].to_numpy(),
            "reason": [f"hot lead (score {int(s)}) in the sales queue" for s in q["score"]],
            "kind": "call", "action": ["call by " + r.strftime("%a %d %b %H:%M UTC") for r in respond],
            "respond_by": respond.to_numpy()})], ignore_index=True)
    f["respond_by"] = pd.to_datetime(f["respond_by"], utc=True)
    score = pd.Series(np.nan, index=f.index)
    if scores is not None and len(scores):
        by_id = pd.Series(pd.to_numeric(scores["score"], errors="coerce").to_numpy(dtype=float),
                          index=scores["golden_id"].astype("string").astype(object))
        score = f["golden_id"].map(by_id[~by_id.index.duplicated()])
    f["score"] = pd.to_numeric(score, errors="coerce").astype("Int64")
    priority = {name: i for i, name in enumerate(("sales_queue",) + FLAG_PRIORITY)}
    f["_sev"] = f["severity"].map(SEVERITY_RANK).fillna(9)
    f["_pri"] = f["flag"].map(priority).fillna(len(priority))
    f["_value"] = -f["score"].astype("Float64").fillna(-1)
    f = f.sort_values(["_sev", "_pri", "_value", "golden_id"], kind="stable")
    n_flags = f.groupby("golden_id", sort=False).size()
    best = f.drop_duplicates("golden_id").copy()
    best["other_flags"] = (best["golden_id"].map(n_flags) - 1).astype(int)
    best["rank"] = best.groupby(best["owner_id"].astype("string").fillna(""), sort=False).cumcount() + 1
    return best[ACTION_COLUMNS].reset_index(drop=True)


def action_counts(actions: pd.DataFrame) -> pd.DataFrame:
    """Per owner: how many leads need each kind of action (one column per kind), and the total."""
    if actions.empty:
        return pd.DataFrame(columns=["owner_id", "actions"])
    owner = actions["owner_id"].astype("string").fillna("")
    table = pd.crosstab(owner, actions["kind"])
    order = [k for k in ["call now", "call", "reassign", "update status", "follow up", "requalify", "close out",
                         "work or close", "merge duplicate", "coach response time"] if k in table]
    table = table[order + [c for c in table.columns if c not in order]]
    table.insert(0, "actions", table.sum(axis=1))
    return table.rename_axis("owner_id").reset_index().rename_axis(None, axis=1)
