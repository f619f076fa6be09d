"""Flags against the sample's planted truth: precision and recall per flag, for tests and the demo.

The planted truth (slowburn.sample's truth.parquet and its raw touches) is read the way a person
would check the flags by hand, independently of the flag code: for each flag, the population it can
be judged on and the leads that should carry it. Judged on single-source people only: a merged
person takes its newest row's owner and status, so the per-row truth does not name one answer.

    python -m slowburn.report.truth --home .slowburn --sample .slowburn/sample
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

OPEN = ("new", "working", "nurturing", "qualified")
TRUTH_FLAGS = ("orphaned", "unclosed", "stale_status", "stage_inflation", "sla_breach", "dropped_followup",
               "worked_not_closed")


def single_source(wh, truth: pd.DataFrame) -> pd.DataFrame:
    """Truth rows of people whose golden record has one source row, with their golden_id."""
    golden = wh.read_table("golden_leads")
    links = wh.read_table("lead_links").merge(golden[["golden_id", "source_count"]], on="golden_id")
    return links[links.source_count == 1].merge(truth, on=["source_system", "source_id"], suffixes=("", "_t"))


def expected(flag: str, s: pd.DataFrame, raw: pd.DataFrame, now: pd.Timestamp,
             sales_queue: pd.DataFrame | None = None) -> tuple[pd.Series, pd.Series]:
    """(population, should_flag) over the rows of `s` for one flag."""
    open_ = s["status"].isin(OPEN)
    everyone = pd.Series(True, index=s.index)
    rep = raw[raw["actor"] != "marketing"]
    if flag == "orphaned":
        return everyone, s["planted_orphaned"].astype(bool)
    if flag == "unclosed":
        return everyone, s["planted_stale"].astype(bool)
    if flag == "stale_status":
        return everyone, s["status_outdated"].astype(bool)
    if flag == "stage_inflation":
        # A rep who left has their later touches recorded as marketing's: those leads are reported as
        # orphaned, so the planted population is everyone else.
        return ~s["planted_orphaned"].astype(bool), s["planted_false_qualified"].astype(bool)
    if flag == "sla_breach":
        # Only leads sent to sales have an SLA: the queue's respond-by passed and the first rep
        # contact since the lead ripened is missing or later than it.
        q = (sales_queue if sales_queue is not None else pd.DataFrame(columns=["golden_id"])).copy()
        queued = s["golden_id"].isin(set(q["golden_id"]))
        q = q.set_index("golden_id").reindex(s["golden_id"])
        respond = pd.Series(pd.to_datetime(q["respond_by"], utc=True).to_numpy(), index=s.index)
        ripened = pd.to_datetime(q["ripened_at"], utc=True)
        firsts = rep.assign(ts=pd.to_datetime(rep["ts"], utc=True)).merge(
            pd.DataFrame({"lead_id": s["source_id"].to_numpy(), "ripened": ripened.to_numpy()}), on="lead_id")
        firsts = firsts[firsts["ts"] >= firsts["ripened"]].groupby("lead_id")["ts"].min()
        first = pd.to_datetime(s["source_id"].map(firsts.astype(object)).astype(object), utc=True)
        due = (respond < now).fillna(False)
        slow = first.isna() | (first > respond).fillna(False)
        return everyone, queued & open_ & due & slow
    if flag == "dropped_followup":
        last_rep = pd.to_datetime(s["source_id"].map(rep.groupby("lead_id")["ts"].max()), utc=True)
        return everyone, (open_ & s["n_rep_touches"].between(1, 3) & (now - last_rep > pd.Timedelta(days=14)))
    if flag == "worked_not_closed":
        # Disqualifying signals a rep could see: an email bounce or unsubscribe event, or the opt-out.
        signal_ids = set(raw.loc[raw["event"].isin(["email_bounce", "unsubscribe"]), "lead_id"])
        seen = s["source_id"].isin(signal_ids) | s["email_opt_out_flag"].fillna(False).astype(bool)
        return everyone, open_ & (s["n_rep_touches"] > 0) & seen
    raise KeyError(flag)


def flag_quality(wh, truth: pd.DataFrame, raw: pd.DataFrame, now: pd.Timestamp, run_id: str | None = None) -> dict:
    """Per flag: planted, flagged, true positives, precision and recall on single-source people; and
    the open flags per golden lead for the whole run."""
    run_id = run_id or wh.read("SELECT MAX(run_id) AS r FROM run_ledger")["r"].iloc[0]
    s = single_source(wh, truth)
    flags = wh.flags_at(run_id, "golden_id, flag, status")
    flags = flags.loc[flags["status"] == "open", ["golden_id", "flag"]]
    queue = wh.read_typed("SELECT golden_id, respond_by, ripened_at FROM sales_queue",
                          datetime_columns=("respond_by", "ripened_at"))
    out = {}
    for flag in TRUTH_FLAGS:
        population, actual = expected(flag, s, raw, now, queue)
        predicted = s["golden_id"].isin(set(flags.loc[flags["flag"] == flag, "golden_id"]))[population]
        actual = actual[population].astype(bool)
        tp = int((predicted & actual).sum())
        out[flag] = {"planted": int(actual.sum()), "flagged": int(predicted.sum()), "true_positives": tp,
                     "precision": round(tp / predicted.sum(), 4) if predicted.sum() else None,
                     "recall": round(tp / actual.sum(), 4) if actual.sum() else None}
    golden = int(wh.read("SELECT COUNT(*) AS n FROM golden_leads")["n"].iloc[0])
    return {"run_id": run_id, "golden_leads": golden, "open_flags": len(flags),
            "open_flags_per_golden_lead": round(len(flags) / max(golden, 1), 3),
            "leads_with_open_flags": int(flags["golden_id"].nunique()),
            "by_flag": flags["flag"].value_counts().to_dict(), "per_flag": out}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=".slowburn")
    parser.add_argument("--sample", default=None, help="the sample folder (default <home>/sample)")
    parser.add_argument("--warehouse", default=None)
    args = parser.parse_args(argv)
    from slowburn.pipeline import default_warehouse_url
    from slowburn.warehouse import Warehouse

    home = Path(args.home)
    sample = Path(args.sample or home / "sample")
    wh = Warehouse(args.warehouse or default_warehouse_url(home))
    manifest = json.loads((sample / "manifest.json").read_text(encoding="utf-8"))
    now = pd.Timestamp(wh.read("SELECT MAX(logical_date) AS d FROM run_ledger")["d"].iloc[0])
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    report = flag_quality(wh, pd.read_parquet(sample / "truth.parquet"), pd.read_parquet(sample / "touches.parquet"),
                          now)
    report["sample_leads"] = manifest.get("counts", {}).get("leads")
    print(json.dumps(report, indent=2, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
