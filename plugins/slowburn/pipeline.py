"""The nightly pipeline as a sequence of steps over one run folder.

Each step reads the Parquet files earlier steps wrote into the run folder, writes its own, and
returns small counts. The Airflow DAG runs one step per task; `slowburn run` runs them all in one
process. Only the load step writes to the warehouse, in one transaction, so a crash anywhere before
or during it leaves the warehouse as it was and a re-run starts clean.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from slowburn import contracts
from slowburn.contracts import ContractError

log = logging.getLogger(__name__)

STEPS = ("extract", "normalise", "validate", "dedupe", "score", "route", "flag", "load", "summarize")

DEFAULT_HOME = Path(".slowburn")


def default_warehouse_url(home: Path) -> str:
    return f"sqlite:///{(Path(home) / 'warehouse.db').resolve()}"


@dataclass
class RunContext:
    """Everything a step needs to know about the run it belongs to."""
    logical_date: pd.Timestamp
    sources_path: Path
    home: Path = DEFAULT_HOME
    warehouse_url: str | None = None
    started_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))

    def __post_init__(self):
        ts = pd.Timestamp(self.logical_date)
        self.logical_date = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        self.home = Path(self.home)
        self.sources_path = Path(self.sources_path)
        self.warehouse_url = self.warehouse_url or default_warehouse_url(self.home)

    @property
    def run_id(self) -> str:
        return self.logical_date.strftime("%Y-%m-%dT%H%M%S")

    @property
    def as_of(self) -> pd.Timestamp:
        """The moment the run scores and routes against: its logical date, so re-runs agree."""
        return self.logical_date

    @property
    def run_dir(self) -> Path:
        path = self.home / "runs" / self.run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, name: str) -> Path:
        return self.run_dir / f"{name}.parquet"

    def read(self, name: str) -> pd.DataFrame:
        path = self.path(name)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the step that writes {name!r} first")
        return pd.read_parquet(path)

    def write(self, name: str, frame: pd.DataFrame) -> None:
        tmp = self.path(name).with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.path(name))  # a crash mid-write never leaves a half file behind

    def write_json(self, name: str, data: dict) -> Path:
        path = self.run_dir / f"{name}.json"
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return path

    def read_json(self, name: str) -> dict:
        return json.loads((self.run_dir / f"{name}.json").read_text(encoding="utf-8"))

    def warehouse(self):
        from slowburn.warehouse import Warehouse
        return Warehouse(self.warehouse_url)


def _sources(ctx: RunContext):
    from slowburn.sources import load_sources
    return load_sources(ctx.sources_path)


def extract(ctx: RunContext) -> dict:
    from slowburn.sources import extract_source

    since = ctx.warehouse().previous_watermarks(ctx.run_id, ctx.logical_date)
    by_entity: dict[str, list[pd.DataFrame]] = {e: [] for e in contracts.INPUT_CONTRACTS}
    watermarks, counts = [], {}
    for cfg in _sources(ctx):
        got = extract_source(cfg, since.get(cfg.name))
        rows = got.rows
        rows.insert(0, "row_key", cfg.name + ":" + rows["row_number"].astype(str))
        rows.insert(1, "source_name", cfg.name)
        by_entity[cfg.entity].append(rows)
        watermarks.append({"source_name": cfg.name, "high_watermark": got.high_watermark or since.get(cfg.name),
                           "rows_landed": len(rows), "region": cfg.default_region})
        counts[f"landed_{cfg.name}"] = len(rows)
    for entity, frames in by_entity.items():
        contract = contracts.INPUT_CONTRACTS[entity]
        empty = pd.DataFrame({c: pd.Series(dtype="string") for c in ["row_key", "source_name"] + contract.names})
        ctx.write(f"landed_{entity}", pd.concat(frames, ignore_index=True) if frames else empty)
        counts[f"landed_{entity}"] = sum(len(f) for f in frames)
    ctx.write_json("watermarks", {"since": since, "sources": watermarks})
    return counts


def normalise(ctx: RunContext) -> dict:
    from slowburn.normalize import normalise_leads, normalise_touches

    regions = {w["source_name"]: w["region"] for w in ctx.read_json("watermarks")["sources"]}
    leads, lead_problems = normalise_leads(ctx.read("landed_leads"), regions)
    touches, touch_problems = normalise_touches(ctx.read("landed_touches"))
    ctx.write("normalised_leads", leads)
    ctx.write("normalised_touches", touches)
    ctx.write("lead_problems", lead_problems)
    ctx.write("touch_problems", touch_problems)
    counts = {"normalised_leads": len(leads), "normalised_touches": len(touches),
              "unparseable_lead_cells": len(lead_problems), "unparseable_touch_cells": len(touch_problems)}
    for entity, contract in (("owners", contracts.OWNERS), ("outcomes", contracts.OUTCOMES_CONTRACT)):
        typed, problems = contracts.coerce(ctx.read(f"landed_{entity}"), contract)
        if len(problems):
            log.warning("%s: %d cell(s) could not be read and are null, e.g. %s", entity, len(problems),
                        problems.head(3).to_dict("records"))
        ctx.write(entity, typed)
        counts[entity] = len(typed)
    return counts


def validate(ctx: RunContext) -> dict:
    from slowburn.validate import validate as run_validation

    docs = ctx.home / "gx"
    leads = run_validation(ctx.read("normalised_leads"), "leads", run_id=ctx.run_id, docs_dir=docs,
                           coercion_problems=ctx.read("lead_problems"))
    touches = run_validation(ctx.read("normalised_touches"), "touches", run_id=ctx.run_id, docs_dir=docs,
                             coercion_problems=ctx.read("touch_problems"))
    ctx.write("valid_leads", leads.valid)
    ctx.write("valid_touches", touches.valid)
    ctx.write("quarantine", pd.concat([leads.quarantine, touches.quarantine], ignore_index=True))
    ctx.write_json("validation", {"leads": leads.statistics, "touches": touches.statistics,
                                  "data_docs": touches.docs_index or leads.docs_index})
    return {"valid_leads": len(leads.valid), "quarantined_leads": leads.statistics["quarantined_rows"],
            "valid_touches": len(touches.valid), "quarantined_touches": touches.statistics["quarantined_rows"],
            "data_docs": touches.docs_index or leads.docs_index}


def current_leads(ctx: RunContext) -> pd.DataFrame:
    """Tonight's valid rows plus the latest valid version of every lead seen before.

    An incremental pull only brings what changed; the leads that never change are exactly the
    ones that go stale, so dedupe, scoring, routing and flags work on the whole current picture.
    """
    today = ctx.read("valid_leads").assign(run_id=ctx.run_id)
    contracts.check(today, contracts.NORMALISED_LEADS, step="dedupe")
    wh = ctx.warehouse()
    wh.ensure_schema()
    earlier = wh.read_typed("SELECT * FROM current_leads WHERE run_id <> :run_id",
                            datetime_columns=("created_at", "updated_at", "last_activity_at"),
                            bool_columns=("email_opt_out", "do_not_call"), run_id=ctx.run_id)
    if earlier.empty:
        return today
    keys = ["source_system", "source_id"]
    replaced = earlier.set_index(keys).index.isin(today.set_index(keys).index)
    earlier = earlier[~replaced].astype({c: "string" for c in earlier.columns if earlier[c].dtype == object})
    return pd.concat([earlier, today[[c for c in today.columns if c in earlier.columns or c == "run_id"]]],
                     ignore_index=True)


def dedupe(ctx: RunContext) -> dict:
    from slowburn.dedupe import cluster_exact, survive

    leads = current_leads(ctx)
    links = cluster_exact(leads)
    golden = survive(leads, links)
    ctx.write("current_leads", leads)
    ctx.write("lead_links", links)
    ctx.write("golden_leads", golden)
    tonight = links["run_id"] == ctx.run_id
    return {"linked_leads": int(tonight.sum()), "current_leads": len(leads), "golden_leads": len(golden),
            "merged_rows": len(links) - len(golden),
            "by_rule": links.loc[tonight, "match_rule"].value_counts().to_dict()}


def score(ctx: RunContext) -> dict:
    from slowburn.ripeness import RulesModel, score_rules, touch_features

    model = RulesModel()
    golden, links, touches = ctx.read("golden_leads"), ctx.read("lead_links"), ctx.read("valid_touches")
    contracts.check(touches, contracts.TOUCHES, step="score")
    earlier = ctx.warehouse().read_typed(
        "SELECT source_system, lead_source_id, touch_type, occurred_at FROM touches WHERE run_id <> :run_id",
        datetime_columns=("occurred_at",), run_id=ctx.run_id)
    # File drops without a watermark re-send old events: count each event once.
    history = pd.concat([earlier, touches[earlier.columns]], ignore_index=True).drop_duplicates(
        ["source_system", "lead_source_id", "touch_type", "occurred_at"])
    features = touch_features(history, links, model, ctx.as_of)
    scores = score_rules(golden, features, model, ctx.as_of)
    scores["scored_at"] = ctx.as_of
    ctx.write("lead_scores", scores)
    touched = touches.merge(links[["source_system", "source_id", "golden_id"]],
                            left_on=["source_system", "lead_source_id"], right_on=["source_system", "source_id"],
                            how="left").drop(columns=["source_id"])
    ctx.write("touches", touched)
    return {"scored": len(scores), "tiers": scores["tier"].value_counts().to_dict(),
            "touches_linked": int(touched["golden_id"].notna().sum()),
            "touches_unlinked": int(touched["golden_id"].isna().sum())}


def route(ctx: RunContext) -> dict:
    from slowburn.route import route as route_leads

    owners = ctx.read("owners")
    contracts.check(owners, contracts.OWNERS, step="route")
    sales, nurture = route_leads(ctx.read("golden_leads"), ctx.read("lead_scores"), owners, ctx.as_of)
    ctx.write("sales_queue", sales)
    ctx.write("nurture_queue", nurture)
    return {"sales_queue": len(sales), "nurture_queue": len(nurture),
            "over_capacity": int(sales["over_capacity"].sum()),
            "no_email_segment": int(nurture["email_opt_out"].sum())}


def flag(ctx: RunContext) -> dict:
    from slowburn.flags import flag_leads

    owners = ctx.read("owners")
    contracts.check(owners, contracts.OWNERS, step="flag")
    flags = flag_leads(ctx.read("golden_leads"), ctx.read("lead_scores"), owners, ctx.as_of)
    ctx.write("lead_flags", flags)
    return {"lead_flags": len(flags), "by_flag": flags["flag"].value_counts().to_dict()}


def ledger_counts(ctx: RunContext) -> dict:
    landed = ctx.read("landed_leads")
    quarantine = ctx.read("quarantine")
    links = ctx.read("lead_links")
    links = links[links["run_id"] == ctx.run_id]
    q_leads = quarantine.loc[quarantine["entity"] == "leads", "row_key"].nunique()
    q_touches = quarantine.loc[quarantine["entity"] == "touches", "row_key"].nunique()
    linked = links["row_key"].nunique()
    accounted = set(links["row_key"]) | set(quarantine.loc[quarantine["entity"] == "leads", "row_key"])
    invariant = (len(landed) == linked + q_leads and accounted == set(landed["row_key"])
                 and not set(links["row_key"]) & set(quarantine.loc[quarantine["entity"] == "leads", "row_key"]))
    return {"landed_leads": len(landed), "linked_leads": linked, "quarantined_leads": q_leads,
            "landed_touches": len(ctx.read("landed_touches")), "quarantined_touches": q_touches,
            "invariant_ok": bool(invariant)}


def load(ctx: RunContext) -> dict:
    counts = ledger_counts(ctx)
    if not counts["invariant_ok"]:
        raise ContractError(f"run {ctx.run_id}: landed ({counts['landed_leads']}) != linked "
                            f"({counts['linked_leads']}) + quarantined ({counts['quarantined_leads']}); "
                            "refusing to load a run that lost or doubled rows")
    landed = ctx.read("landed_leads").rename(columns={"__malformed_line__": "malformed_line"})
    wm = ctx.read_json("watermarks")["sources"]
    frames = {
        "landed_leads": landed,
        "touches": ctx.read("touches"),
        "quarantine": ctx.read("quarantine").rename(columns={"column": "column_name"}),
        "current_leads": ctx.read("current_leads"),
        "golden_leads": ctx.read("golden_leads"),
        "lead_links": ctx.read("lead_links"),
        "lead_scores": ctx.read("lead_scores"),
        "sales_queue": ctx.read("sales_queue"),
        "nurture_queue": ctx.read("nurture_queue"),
        "lead_flags": ctx.read("lead_flags"),
        "owners": ctx.read("owners"),
        "outcomes": ctx.read("outcomes"),
        "source_watermarks": pd.DataFrame(wm).assign(logical_date=ctx.logical_date),
    }
    ledger = {
        **counts,
        "logical_date": ctx.logical_date, "status": "success", "started_at": ctx.started_at,
        "finished_at": pd.Timestamp.now(tz="UTC"),
        "golden_leads": len(frames["golden_leads"]), "sales_queue": len(frames["sales_queue"]),
        "nurture_queue": len(frames["nurture_queue"]), "lead_flags": len(frames["lead_flags"]),
        "step_counts": json.dumps(read_step_counts(ctx), default=str),
    }
    ctx.warehouse().replace_run(ctx.run_id, frames, ledger)
    log.info("load: run %s committed: %d landed = %d linked + %d quarantined", ctx.run_id,
             counts["landed_leads"], counts["linked_leads"], counts["quarantined_leads"])
    return {k: v for k, v in ledger.items() if k not in ("step_counts",)}


def summarize(ctx: RunContext) -> dict:
    from slowburn.report.summary import write_run_summary
    return write_run_summary(ctx)


STEP_FUNCTIONS = {"extract": extract, "normalise": normalise, "validate": validate, "dedupe": dedupe,
                  "score": score, "route": route, "flag": flag, "load": load, "summarize": summarize}


def read_step_counts(ctx: RunContext) -> dict:
    path = ctx.run_dir / "step_counts.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def run_step(ctx: RunContext, step: str) -> dict:
    """Run one step and record its counts in the run folder, for the ledger and the summary."""
    if step not in STEP_FUNCTIONS:
        raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
    started = time.perf_counter()
    log.info("step %s: starting run %s", step, ctx.run_id)
    result = STEP_FUNCTIONS[step](ctx)
    seconds = time.perf_counter() - started
    log.info("step %s: done in %.1f s: %s", step, seconds, result)
    counts = read_step_counts(ctx)
    counts[step] = {**result, "seconds": round(seconds, 2)}
    (ctx.run_dir / "step_counts.json").write_text(json.dumps(counts, indent=2, default=str), encoding="utf-8")
    return result


def run_all(ctx: RunContext) -> dict:
    return {step: run_step(ctx, step) for step in STEPS}
