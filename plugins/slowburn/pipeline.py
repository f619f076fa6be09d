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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slowburn import atomic, contracts, storage
from slowburn.arrowkeys import is_in, joined, positions, strings
from slowburn.contracts import ContractError
from slowburn.warehouse import as_utc

log = logging.getLogger(__name__)

STEPS = ("extract", "normalise", "validate", "dedupe", "score", "route", "flag", "load", "summarize")

DEFAULT_HOME = Path(".slowburn")


def default_warehouse_url(home: Path) -> str:
    return f"sqlite:///{(Path(home) / 'warehouse.db').resolve()}"


class AttemptMismatch(ContractError):
    """A step output in the run folder was not written by the attempt that is reading it."""


# Which step writes each run-folder output: error messages say what to re-run.
WRITTEN_BY = {
    **{f"landed_{e}": "extract" for e in contracts.INPUT_CONTRACTS},
    **{n: "normalise" for n in ("normalised_leads", "normalised_touches", "lead_problems", "touch_problems",
                                "owners", "outcomes")},
    **{n: "validate" for n in ("valid_leads", "valid_touches", "quarantine")},
    **{n: "dedupe" for n in ("current_leads", "lead_links", "golden_leads", "dedupe_review", "golden_merges",
                             "golden_changes")},
    **{n: "score" for n in ("lead_scores", "touches", "touch_rollup", "touch_rollup_seen", "touch_rollup_pending")},
    **{n: "route" for n in ("sales_queue", "nurture_queue")},
    "lead_flags": "flag",
}
ATTEMPT_KEY = "slowburn_attempt"  # Parquet schema metadata: the token of the attempt that wrote the file


@dataclass
class RunContext:
    """Everything a step needs to know about the run it belongs to.

    A run (one logical date) has one folder per attempt, runs/<run_id>/attempt-<n>: the extract step
    starts a new attempt, every later step works in the attempt it is given (Airflow passes the one
    its extract task started) or the newest one. Every output is stamped with the attempt's token and
    read back only by the same attempt, so two attempts can never mix their files.
    `data_interval_end` bounds the extract: rows whose watermark is later belong to a later run.
    `artifacts` is where run folders and models live: `home` (local) unless given a URL or a UPath
    (s3://bucket/prefix, an Airflow ObjectStoragePath; see slowburn.storage). `home` stays the local
    working folder (default SQLite warehouse, GX context, scratch files).
    """
    logical_date: pd.Timestamp
    sources_path: Path
    home: Path = DEFAULT_HOME
    warehouse_url: str | None = None
    attempt: int | None = None
    data_interval_end: pd.Timestamp | None = None
    try_number: int | None = None
    artifacts: object = None

    def __post_init__(self):
        self.logical_date = as_utc(self.logical_date)
        self.data_interval_end = as_utc(self.data_interval_end) if self.data_interval_end is not None else None
        self.home = Path(self.home)
        self.sources_path = Path(self.sources_path)
        self.warehouse_url = self.warehouse_url or default_warehouse_url(self.home)
        self.artifacts = storage.location(self.home if self.artifacts is None else self.artifacts)
        self._attempt_info: dict | None = None

    @property
    def run_id(self) -> str:
        return self.logical_date.strftime("%Y-%m-%dT%H%M%S")

    @property
    def as_of(self) -> pd.Timestamp:
        """The moment the run scores and routes against: its logical date, so re-runs agree."""
        return self.logical_date

    @property
    def extract_until(self) -> pd.Timestamp:
        """The newest source change this run may pull: the end of its data interval."""
        return self.data_interval_end if self.data_interval_end is not None else self.logical_date

    @property
    def run_root(self):
        return self.artifacts / "runs" / self.run_id

    @property
    def models_dir(self):
        return self.artifacts / "models"

    @property
    def scratch_dir(self) -> Path:
        """A local folder for temporary files: the run folder when it is local, else the home folder."""
        folder = self.run_dir if storage.is_local(self.run_dir) else self.home
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def attempts(self) -> list[int]:
        if not self.run_root.is_dir():
            return []
        return sorted(int(p.name.split("-", 1)[1]) for p in self.run_root.glob("attempt-*")
                      if p.name.split("-", 1)[1].isdigit())

    def start_attempt(self) -> int:
        """A new, empty attempt folder (numbers are never reused, even by two processes at once).

        Locally the folder's mkdir claims the number; on object storage, which has no folders, the
        exclusive create of its attempt.json does (storage.create_exclusive says where that is atomic).
        """
        import uuid
        local = storage.is_local(self.run_root)
        if local:
            self.run_root.mkdir(parents=True, exist_ok=True)
        n = (self.attempts() or [0])[-1] + 1
        token = uuid.uuid4().hex
        while True:
            info = {"run_id": self.run_id, "attempt": n, "token": token, "try_number": self.try_number,
                    "pid": os.getpid(), "started_at": pd.Timestamp.now(tz="UTC").isoformat()}
            try:
                if local:
                    (self.run_root / f"attempt-{n}").mkdir()
                else:
                    storage.create_exclusive(self.run_root / f"attempt-{n}" / "attempt.json",
                                             json.dumps(info, indent=2, default=str).encode("utf-8"))
                break
            except FileExistsError:
                n += 1
        self.attempt = n
        self._attempt_info = info
        if local:
            atomic.write_json(self.run_dir / "attempt.json", self._attempt_info)
        return n

    @property
    def run_dir(self):
        if self.attempt is None:
            found = self.attempts()
            if not found:
                raise FileNotFoundError(f"run {self.run_id} has no attempt under {self.run_root}; "
                                        "run the extract step (or `slowburn run`) first")
            self.attempt = found[-1]
        path = self.run_root / f"attempt-{self.attempt}"
        if not path.is_dir():
            raise FileNotFoundError(f"{path} does not exist: attempt {self.attempt} of run {self.run_id} was "
                                    "never started; run the extract step to start an attempt")
        return path

    @property
    def attempt_info(self) -> dict:
        if self._attempt_info is None or self._attempt_info.get("attempt") != self.attempt:
            path = self.run_dir / "attempt.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: this folder was not made by the extract step; "
                                        "re-run from extract")
            self._attempt_info = json.loads(path.read_text(encoding="utf-8"))
        return self._attempt_info

    @property
    def token(self) -> str:
        return self.attempt_info["token"]

    def path(self, name: str):
        return self.run_dir / f"{name}.parquet"

    def _checked(self, name: str):
        """The output's path once its footer proves that this attempt wrote it."""
        path = self.path(name)
        step = WRITTEN_BY.get(name, "the step that writes it")
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the {step} step of this attempt first")
        try:
            meta = storage.parquet_schema(path).metadata or {}
        except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError for damaged files
            raise ContractError(f"{path} is not a readable Parquet file ({exc}); re-run the {step} step "
                                "(or start a new attempt from extract)") from None
        owner = meta.get(ATTEMPT_KEY.encode(), b"").decode()
        if owner != self.token:
            raise AttemptMismatch(f"{path} was not written by attempt {self.attempt} of run {self.run_id} "
                                  f"(its token is {owner or 'missing'!r}); re-run the {step} step in this attempt, "
                                  "or start a new attempt from extract")
        return path

    def read(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        return storage.read_parquet(self._checked(name), columns=columns)

    def rows(self, name: str) -> int:
        """Row count of a step output, from the Parquet footer (no data read)."""
        return storage.parquet_rows(self._checked(name))

    def write(self, name: str, frame: pd.DataFrame) -> None:
        atomic.write_parquet(self.path(name), frame, {ATTEMPT_KEY: self.token})

    def write_json(self, name: str, data: dict):
        return atomic.write_json(self.run_dir / f"{name}.json", {**data, ATTEMPT_KEY: self.token})

    def read_json(self, name: str) -> dict:
        path = self.run_dir / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the step that writes it in this attempt first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ContractError(f"{path} is not valid JSON ({exc}); re-run the step that writes it") from None
        if data.get(ATTEMPT_KEY) != self.token:
            raise AttemptMismatch(f"{path} was not written by attempt {self.attempt} of run {self.run_id}; "
                                  "re-run the step that writes it in this attempt")
        return data

    def warehouse(self):
        from slowburn.warehouse import Warehouse
        return Warehouse(self.warehouse_url)


def _sources(ctx: RunContext):
    from slowburn.sources import load_sources
    return load_sources(ctx.sources_path)


def extract(ctx: RunContext) -> dict:
    """Pull each source from its watermark up to the end of the run's data interval.

    The upper bound makes a run's pull repeatable: re-running an old date never lands later changes
    (they belong to the later run). A run older than the newest loaded run is refused here, before
    any work (see Warehouse.refuse_older_run).
    """
    from slowburn.sources import extract_source

    from slowburn.sources.config import attribute_types

    wh = ctx.warehouse()
    since = wh.previous_watermarks(ctx.run_id, ctx.logical_date)
    by_entity: dict[str, list[pd.DataFrame]] = {e: [] for e in contracts.INPUT_CONTRACTS}
    watermarks, counts, repairs = [], {}, {}
    sources = _sources(ctx)
    for cfg in sources:
        got = extract_source(cfg, since.get(cfg.name), until=ctx.extract_until)
        rows = got.rows
        rows.insert(0, "row_key", cfg.name + ":" + rows["row_number"].astype(str))
        rows.insert(1, "source_name", cfg.name)
        by_entity[cfg.entity].append(rows)
        watermarks.append({"source_name": cfg.name, "high_watermark": got.high_watermark or since.get(cfg.name),
                           "rows_landed": len(rows), "region": cfg.default_region})
        counts[f"landed_{cfg.name}"] = len(rows)
        if got.deferred:
            counts[f"deferred_{cfg.name}"] = got.deferred
        if got.repairs:
            repairs[cfg.name] = got.repairs
    for entity, frames in by_entity.items():
        contract = contracts.INPUT_CONTRACTS[entity]
        empty = pd.DataFrame({c: pd.Series(dtype="string") for c in ["row_key", "source_name"] + contract.names})
        ctx.write(f"landed_{entity}", pd.concat(frames, ignore_index=True) if frames else empty)
        counts[f"landed_{entity}"] = sum(len(f) for f in frames)
    if repairs:
        counts["repaired_cells"] = repairs
    # Each Airflow task builds its own RunContext: the run's start is recorded by its first step.
    ctx.write_json("watermarks", {"since": since, "until": ctx.extract_until.isoformat(), "sources": watermarks,
                                  "attribute_types": attribute_types(sources),
                                  "started_at": pd.Timestamp.now(tz="UTC").isoformat()})
    return counts


def normalise(ctx: RunContext) -> dict:
    from slowburn.normalize import normalise_leads, normalise_touches

    extracted = ctx.read_json("watermarks")
    regions = {w["source_name"]: w["region"] for w in extracted["sources"]}
    leads, lead_problems = normalise_leads(ctx.read("landed_leads"), regions, extracted.get("attribute_types"))
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
    from slowburn.validate import build_data_docs, gx_context, validate as run_validation

    gx = gx_context(ctx.home / "gx")  # one context for both suites: creating one costs seconds
    leads = run_validation(ctx.read("normalised_leads"), "leads", run_id=ctx.run_id, context=gx,
                           coercion_problems=ctx.read("lead_problems"))
    touches = run_validation(ctx.read("normalised_touches"), "touches", run_id=ctx.run_id, context=gx,
                             coercion_problems=ctx.read("touch_problems"))
    docs = build_data_docs(gx)
    if docs and not storage.is_local(ctx.run_dir):
        docs = _publish_data_docs(ctx, docs)
    ctx.write("valid_leads", leads.valid)
    ctx.write("valid_touches", touches.valid)
    ctx.write("quarantine", pd.concat([leads.quarantine, touches.quarantine], ignore_index=True))
    ctx.write_json("validation", {"leads": leads.statistics, "touches": touches.statistics, "data_docs": docs})
    return {"valid_leads": len(leads.valid), "quarantined_leads": leads.statistics["quarantined_rows"],
            "valid_touches": len(touches.valid), "quarantined_touches": touches.statistics["quarantined_rows"],
            "data_docs": docs}


def _loaded_runs(ctx: RunContext) -> pd.DataFrame | None:
    """The loaded runs before this one (run_id, attempt, attempt_token); None on a re-run of a loaded night.

    Their attempt folders hold exactly what their loads wrote, so steps may read them instead of the
    warehouse; a re-run of a loaded night must not (the warehouse already holds the night itself).
    """
    wh = ctx.warehouse()
    wh.ensure_schema()
    ledger = wh.read("SELECT run_id, attempt, attempt_token FROM run_ledger WHERE status = 'success' ORDER BY run_id")
    return None if (ledger["run_id"] >= ctx.run_id).any() else ledger


def _loaded_output(ctx: RunContext, run: pd.Series, name: str, columns: list[str] | None = None):
    """A loaded run's output from its attempt folder, or None unless its token is the one the ledger recorded."""
    if pd.isna(run["attempt"]) or not run["attempt_token"]:
        return None
    earlier = RunContext(logical_date=pd.to_datetime(run["run_id"], format="%Y-%m-%dT%H%M%S").tz_localize("UTC"),
                         sources_path=ctx.sources_path, home=ctx.home, warehouse_url=ctx.warehouse_url,
                         artifacts=ctx.artifacts, attempt=int(run["attempt"]))
    try:
        if earlier.token != run["attempt_token"]:
            return None
        return earlier.read(name, columns=columns)
    except (FileNotFoundError, ContractError, OSError) as exc:
        log.info("%s: run %s's folder cannot be used (%s); reading the warehouse", name, run["run_id"], exc)
        return None


def previous_state(ctx: RunContext, table: str, columns: list[str] | None = None, where: str = "",
                   **params) -> pd.DataFrame:
    """A state table as the previous loaded run left it.

    From that run's attempt folder when it provably holds what was loaded (see _loaded_runs,
    _loaded_output): a million rows from Parquet take a second, from the warehouse ten or more.
    Otherwise from the warehouse, which stays the truth (`where`, `params`: the warehouse read's filter,
    e.g. to leave out a loaded night's own rows on its re-run).
    """
    runs = _loaded_runs(ctx)
    if runs is not None and not runs.empty:
        frame = _loaded_output(ctx, runs.iloc[-1], table, columns)
        if frame is not None:
            log.info("%s: %d rows from run %s's folder (the copy its load wrote)", table, len(frame),
                     runs["run_id"].iloc[-1])
            return frame
    wh = ctx.warehouse()
    wh.ensure_schema()
    return wh.read_state(table, columns, where, **params)


def earlier_touches(ctx: RunContext, columns: list[str], types: list[str] | None = None) -> pd.DataFrame:
    """Every touch earlier runs loaded: from their attempt folders when each is provably the loaded
    copy (millions of rows read from Parquet in seconds), else from the warehouse."""
    runs = _loaded_runs(ctx)
    frames = [] if runs is not None else None
    for _, run in runs.iterrows() if runs is not None else ():
        frame = _loaded_output(ctx, run, "touches", columns)
        if frame is None:
            frames = None
            break
        if len(frame):
            frames.append(frame[frame["touch_type"].isin(types)] if types is not None else frame)
    if frames is None:
        only = f"touch_type IN ({', '.join(repr(t) for t in types)}) AND " if types is not None else ""
        return ctx.warehouse().read_state("touches", columns, f"{only}run_id <> :run_id", run_id=ctx.run_id)
    log.info("touch history: %d rows from %d earlier runs' folders", sum(map(len, frames)), len(runs))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c == "occurred_at" else "string")
                             for c in columns})
    return pd.concat([f.astype({"occurred_at": "datetime64[ns, UTC]"}) for f in frames], ignore_index=True)


def _publish_data_docs(ctx: RunContext, url: str) -> str:
    """Copy the Data Docs site GX built under the local home into the run folder; its index's URL.

    GX renders Data Docs into a local file context; a worker's local disk is not shared, so the site
    is published where the run folder is (<attempt>/data_docs/) for the summary to link to.
    """
    from urllib.parse import unquote, urlparse

    site = Path(unquote(urlparse(url).path)).parent
    storage.upload_tree(site, ctx.run_dir / "data_docs")
    return str(ctx.run_dir / "data_docs" / "index.html")


def current_leads(ctx: RunContext) -> pd.DataFrame:
    """Tonight's valid rows plus the latest valid version of every lead seen before.

    An incremental pull only brings what changed; the leads that never change are exactly the
    ones that go stale, so dedupe, scoring, routing and flags work on the whole current picture.
    """
    today = ctx.read("valid_leads").assign(run_id=ctx.run_id)
    contracts.check(today, contracts.NORMALISED_LEADS, step="dedupe")
    earlier = previous_state(ctx, "current_leads", where="run_id <> :run_id", run_id=ctx.run_id)
    if earlier.empty:
        return today
    keys = ["source_system", "source_id"]
    # Only rows whose source_id came again tonight can be replaced: the pair check (a MultiIndex
    # over every earlier row costs seconds) runs on those few, and one take drops them.
    maybe = earlier["source_id"].isin(today["source_id"].dropna()).to_numpy(dtype=bool, na_value=False)
    if today["source_id"].isna().any():
        maybe |= earlier["source_id"].isna().to_numpy()
    maybe = np.flatnonzero(maybe)
    replaced = np.zeros(len(earlier), bool)
    replaced[maybe] = earlier.iloc[maybe].set_index(keys).index.isin(today.set_index(keys).index)
    earlier = earlier.take(np.flatnonzero(~replaced)) if replaced.any() else earlier
    earlier = earlier.astype({c: "string" for c in earlier.columns if earlier[c].dtype == object})
    return pd.concat([earlier, today[[c for c in today.columns if c in earlier.columns or c == "run_id"]]],
                     ignore_index=True)


def previous_links(ctx: RunContext) -> pd.DataFrame:
    """The lead_links state as the previous run left it: which golden record every earlier row is in."""
    return previous_state(ctx, "lead_links")


def _previous_golden(ctx: RunContext) -> pd.DataFrame | None:
    """The golden_leads state as the previous run left it, so dedupe re-survives only the records
    tonight touched; None on the first night (dedupe then survives every record)."""
    golden = previous_state(ctx, "golden_leads")
    return golden if len(golden) else None


def dedupe(ctx: RunContext) -> dict:
    """Link tonight's new and changed leads into golden records (see slowburn.dedupe).

    Earlier rows keep their golden ids from the lead_links state and are only compared with
    tonight's rows; the Splink model is reused from <artifacts>/models/dedupe while the data has not
    drifted, and the model used is saved into the run folder (dedupe_model.json) for audit.
    """
    from slowburn.dedupe import dedupe_leads
    from slowburn.dedupe.config import load_config

    leads = current_leads(ctx)
    result = dedupe_leads(leads, previous_links(ctx), load_config(),
                          previous_golden=_previous_golden(ctx), run_id=ctx.run_id,
                          model_dir=ctx.models_dir / "dedupe", run_dir=ctx.scratch_dir)
    ctx.write("current_leads", leads)
    ctx.write("lead_links", result.links)
    ctx.write("golden_leads", result.golden)
    ctx.write("dedupe_review", result.review)
    ctx.write("golden_merges", result.merges.astype({"survivor": "string", "absorbed": "string"}))
    # Records tonight changed or removed: the score step explains only leads whose inputs changed.
    ctx.write("golden_changes", pd.DataFrame({
        "golden_id": pd.array(sorted(result.changed_golden_ids) + sorted(result.removed_golden_ids), dtype="string"),
        "change": pd.array(["changed"] * len(result.changed_golden_ids) + ["removed"] * len(result.removed_golden_ids),
                           dtype="string")}))
    if result.model is not None:
        ctx.write_json("dedupe_model", result.model)
    ctx.write_json("dedupe_report", result.report)
    tonight = (result.links["run_id"] == ctx.run_id).fillna(False)
    return {"linked_leads": int(tonight.sum()), "current_leads": len(leads), "golden_leads": len(result.golden),
            "merged_rows": len(result.links) - len(result.golden), "mode": result.report.get("mode"),
            "review_pairs": len(result.review), "golden_records_merged": len(result.merges),
            "golden_changed": len(result.changed_golden_ids), "golden_removed": len(result.removed_golden_ids),
            "links_changed": int(result.changed_links.sum()),
            "by_rule": result.links.loc[tonight, "match_rule"].value_counts().to_dict()}


def score(ctx: RunContext) -> dict:
    from slowburn.ripeness import load_config, score_leads
    from slowburn.ripeness.features import SCORED_GOLDEN_COLUMNS
    from slowburn.ripeness.rollup import TOUCH_COLUMNS, TOUCH_KEY

    cfg = load_config()
    golden = _read_used(ctx, "golden_leads", SCORED_GOLDEN_COLUMNS)
    links = ctx.read("lead_links", columns=["source_system", "source_id", "golden_id"])
    touches = ctx.read("valid_touches")
    contracts.check(touches, contracts.TOUCHES, step="score")
    wh = ctx.warehouse()
    # Tonight's touches keyed to their golden leads are written first and the full frame let go:
    # at a million leads it is 0.75 GB that the scoring below, the step's peak, need not hold.
    tonight_touched = _golden_id_of_touches(touches, links)
    ctx.write("touches", touches.assign(golden_id=tonight_touched))
    touch_counts = {"touches_linked": int(tonight_touched.notna().sum()),
                    "touches_unlinked": int(tonight_touched.isna().sum())}
    touches = touches[TOUCH_COLUMNS]

    def history():
        """Every touch so far, each event once (file drops without a watermark re-send old events);
        tonight's are read back from the folder, as the frame above is gone by the time a model trains."""
        earlier = earlier_touches(ctx, TOUCH_COLUMNS)
        tonight = ctx.read("valid_touches", columns=TOUCH_COLUMNS)
        return (pd.concat([earlier, tonight], ignore_index=True).drop_duplicates(TOUCH_KEY)
                if len(earlier) else tonight)

    rollup, rollup_source = _touch_rollup(ctx, touches, history, cfg)
    del touches
    previous = _previous_scores(ctx)
    changed_inputs = None
    if previous is not None and ctx.path("golden_changes").exists():
        changed_inputs = set(ctx.read("golden_changes")["golden_id"].dropna()) | set(tonight_touched.dropna())
    del tonight_touched
    scores, info = score_leads(golden, links, history, _outcome_history(ctx, wh), cfg, ctx.as_of,
                               home=ctx.artifacts, previous=previous, changed_inputs=changed_inputs, rollup=rollup)
    scores["scored_at"] = ctx.as_of
    # Reasons are their own state (lead_reasons): only the leads explained tonight have new ones; every
    # other lead keeps the ones stored for it, which are never rewritten because days passed.
    explained = scores["reasons"].notna().to_numpy()
    ctx.write("lead_reasons", scores.loc[explained, ["golden_id", "reasons", "score", "model_version"]]
              .rename(columns={"score": "reasons_score"}).assign(reasons_at=ctx.as_of).reset_index(drop=True))
    ctx.write("lead_scores", scores.drop(columns="reasons"))
    for name, frame in rollup.frames().items():
        ctx.write(name, frame)
    ctx.write_json("scoring", info)
    return {"scored": len(scores), "tiers": scores["tier"].value_counts().to_dict(),
            "scorer": info["scorer"], "model_version": info["model_version"],
            "fallback_reason": info["fallback_reason"], "model_trained": info["trained"],
            "history_closed_leads": info["history_closed_leads"],
            "history_conversions": info["history_conversions"],
            "reasons_explained": info["reasons_explained"], "reasons_carried": info["reasons_carried"],
            "reasons_aged": info.get("reasons_aged", 0),
            "touch_rollup": rollup_source, **touch_counts}


def _touch_rollup(ctx: RunContext, touches: pd.DataFrame, history, cfg):
    """Touch facts per source lead as of tonight, and where they came from: the last loaded run's rollup
    plus tonight's touches when its folder provably holds it and it was made with tonight's engagement
    settings; else built from history() (a first night, a re-run of a loaded night, changed settings)."""
    from slowburn.ripeness.rollup import ROLLUP_FILES, TouchRollup, basis

    runs = _loaded_runs(ctx)
    if runs is not None and not runs.empty:
        last = runs.iloc[-1]
        parts = [_loaded_output(ctx, last, name) for name in ROLLUP_FILES]
        why = "its folder holds none"
        try:
            stored = TouchRollup.from_frames(*parts) if all(p is not None for p in parts) else None
        except (ValueError, KeyError) as exc:  # e.g. empty (no touch yet) or written by another version
            stored, why = None, str(exc)
        if stored is not None:
            if stored.basis in (None, basis(cfg)) and stored.as_of <= ctx.as_of:
                rollup = stored.fold(touches, ctx.as_of, cfg)
                log.info("touch rollup: run %s's %d source leads plus tonight's %d touches", last["run_id"],
                         len(stored.keys), len(touches))
                return rollup, f"carried from run {last['run_id']}"
            why = "it is newer" if stored.basis in (None, basis(cfg)) else "it was made with other engagement settings"
        log.info("touch rollup: run %s's cannot be used (%s); building it from the whole history",
                 last["run_id"], why)
    return TouchRollup.build(history(), ctx.as_of, cfg), "built from the whole history"


def _previous_scores(ctx: RunContext) -> pd.DataFrame | None:
    """The scores as the previous loaded run left them: a lead whose inputs and model are unchanged
    keeps its stored reasons (score_leads), so only changed leads are explained. None before the first load."""
    previous = previous_state(ctx, "lead_scores", ["golden_id", "score", "tier", "model_version"])
    return _with_stored_reasons(ctx, previous) if len(previous) else None


def _with_stored_reasons(ctx: RunContext, previous: pd.DataFrame) -> pd.DataFrame | None:
    """The previous scores whose reasons the warehouse holds: only those can be carried. Each load
    proves every scored lead has stored reasons, so the counts agree and no id is read; where they do
    not (a restored or hand-edited warehouse) the leads without stored reasons are explained again."""
    wh = ctx.warehouse()
    if int(wh.read("SELECT COUNT(*) AS n FROM lead_reasons")["n"].iloc[0]) == len(previous):
        return previous
    stored = wh.read("SELECT golden_id FROM lead_reasons")["golden_id"]
    kept = previous[is_in(previous["golden_id"], stored)]
    log.warning("score: the warehouse holds no reasons for %d of the %d previously scored leads; they are "
                "explained again tonight", len(previous) - len(kept), len(previous))
    return kept if len(kept) else None


def current_reasons(ctx: RunContext, golden_ids: pd.Series, score: pd.Series) -> list[str]:
    """Each lead's reasons as they explain tonight's `score`: explained tonight (lead_reasons in the run
    folder), else the ones stored in the warehouse, with the days passed since (reasons.reasons_now)."""
    import pyarrow as pa

    from slowburn.ripeness.reasons import reasons_now

    wanted = pd.Series(golden_ids, dtype="string").reset_index(drop=True)
    # Only the wanted leads' rows are read: a first night's lead_reasons holds every lead's (a GB at 1M).
    tonight = storage.read_parquet_where_in(ctx._checked("lead_reasons"), ["golden_id", "reasons", "reasons_score",
                                                                           "reasons_at"], "golden_id", wanted)
    tonight = tonight.to_pandas(types_mapper={pa.string(): pd.StringDtype(),
                                              pa.large_string(): pd.StringDtype()}.get)
    rest = wanted[~is_in(wanted, tonight["golden_id"])]
    stored = ctx.warehouse().reasons_of(rest) if len(rest) else tonight.iloc[:0]
    found = pd.concat([tonight, stored], ignore_index=True) if len(stored) else tonight
    row = positions(wanted, found["golden_id"])
    if (row < 0).any():
        lost = wanted[row < 0]
        raise ContractError(f"run {ctx.run_id}: {len(lost)} scored lead(s) have no reasons, neither explained "
                            f"tonight nor stored in the warehouse's lead_reasons (first: {lost.iloc[0]}); run the "
                            "score step again: it explains every lead whose stored reasons are missing")
    found = found.iloc[row]
    since = pd.to_datetime(found["reasons_at"], utc=True).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    return reasons_now(found["reasons"].tolist(), found["reasons_score"].to_numpy(dtype=float),
                       np.asarray(score, dtype=float), since)


def _golden_id_of_touches(touches: pd.DataFrame, links: pd.DataFrame) -> pd.Series:
    """Each touch's golden_id (null when its source lead is not linked), by an Arrow hash lookup."""
    import pyarrow as pa

    keyed = links.drop_duplicates(["source_system", "source_id"])
    row = positions(joined(touches["source_system"], touches["lead_source_id"]),
                    joined(keyed["source_system"], keyed["source_id"]))
    # An Arrow take (-1 as null): no Python string per touch, millions of them in the flag step.
    ids = strings(keyed["golden_id"]).take(pa.array(row, mask=row < 0)) if len(keyed) else \
        pa.nulls(len(row), pa.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(ids), index=touches.index, dtype="string")


def _outcome_history(ctx: RunContext, wh) -> pd.DataFrame:
    """Every won/lost outcome seen so far (tonight's and earlier runs'), once per source lead."""
    cols = ["source_system", "source_id", "outcome", "closed_at"]
    tonight = ctx.read("outcomes")[cols]
    earlier = wh.read_typed("SELECT DISTINCT source_system, source_id, outcome, closed_at FROM outcomes "
                            "WHERE run_id <> :run_id", datetime_columns=("closed_at",), run_id=ctx.run_id)
    both = pd.concat([earlier[cols], tonight], ignore_index=True) if len(earlier) else tonight
    both = both.sort_values("closed_at", kind="stable", na_position="first")
    return both.drop_duplicates(["source_system", "source_id"], keep="last")


def _read_used(ctx: RunContext, name: str, wanted) -> pd.DataFrame:
    """Only the columns a step uses (those the file has): golden records carry provenance and member
    lists, scores their reasons, that a step not reading them would hold for nothing."""
    names = set(storage.parquet_schema(ctx._checked(name)).names)
    return ctx.read(name, columns=[c for c in wanted if c in names])


def route(ctx: RunContext) -> dict:
    from slowburn.ripeness import load_config
    from slowburn.route import ROUTE_INPUT_COLUMNS, RoutingConfig, route as route_leads

    owners = ctx.read("owners")
    contracts.check(owners, contracts.OWNERS, step="route")
    cfg = RoutingConfig.from_config(load_config())
    previous_sales, previous_nurture, previous_at = _previous_queues(ctx)
    # Reasons are shown only in the sales queue: they are read only for the leads that enter it.
    scores = _read_used(ctx, "lead_scores", [c for c in ROUTE_INPUT_COLUMNS if c != "reasons"])
    golden = _read_used(ctx, "golden_leads", ROUTE_INPUT_COLUMNS)
    sales, nurture = route_leads(golden, scores, owners, ctx.as_of, cfg, previous_sales=previous_sales,
                                 previous_nurture=previous_nurture, previous_run_at=previous_at,
                                 reasons_for=lambda ids, score: current_reasons(ctx, ids, score),
                                 previous_scores_of=lambda ids: ctx.warehouse().scores_before(ctx.run_id, ids))
    ctx.write("sales_queue", sales)
    ctx.write("nurture_queue", nurture)
    return {"sales_queue": len(sales), "nurture_queue": len(nurture),
            "over_capacity": int(sales["over_capacity"].sum()),
            "pass_back": int(sales["pass_back"].sum()),
            "sla_missed": int(nurture["sla_missed"].sum()),
            "no_email_segment": int(nurture["email_opt_out"].sum())}


_QUEUE_COLUMNS = {
    "sales_queue": (["golden_id", "owner_id", "queued_at", "ripened_at", "respond_by", "pass_back",
                     "pass_back_reason"], ("queued_at", "ripened_at", "respond_by")),
    "nurture_queue": (["golden_id", "sla_missed_at", "missed_owner_id", "next_touch_at"],
                      ("sla_missed_at", "next_touch_at")),
}


def _previous_queues(ctx: RunContext):
    """The sales and nurture queues as the previous loaded run left them.

    The warehouse is the memory, not the run folder, so a re-run (even with its run folder lost) sees
    the same previous queues and keeps the same owners. Before this run has loaded, the queue state
    tables are the previous run's queues (read from its attempt folder when that provably holds what
    it loaded, see previous_state: half a million nurture rows from SQLite cost seconds). Once it has,
    they hold this run's: its load recorded in queue_history each queue row as it was before the run
    changed it ('before') or that the run added it ('absent'), and undoing those gives the previous
    queues back. Runs loaded by older
    versions kept whole queues per run in queue_history (change IS NULL) and are read as such.
    """
    wh = ctx.warehouse()
    wh.ensure_schema()
    previous = wh.read("SELECT run_id FROM run_ledger WHERE status = 'success' AND run_id = "
                       "(SELECT MAX(run_id) FROM run_ledger WHERE status = 'success' AND run_id < :run_id)",
                       run_id=ctx.run_id)
    if previous.empty:
        return _empty_queue("sales_queue"), _empty_queue("nurture_queue"), None
    previous_run = previous["run_id"].iloc[0]
    previous_at = pd.Timestamp(pd.to_datetime(previous_run, format="%Y-%m-%dT%H%M%S")).tz_localize("UTC")
    stamps = tuple(c for _, cols in _QUEUE_COLUMNS.values() for c in cols)
    loaded = not wh.read("SELECT run_id FROM run_ledger WHERE run_id = :run_id", run_id=ctx.run_id).empty
    snapshot = wh.read_typed("SELECT * FROM queue_history WHERE run_id = :run_id AND change IS NULL",
                             datetime_columns=stamps, bool_columns=("pass_back",), run_id=previous_run)
    if loaded and len(snapshot):  # the previous run was loaded by an older version: its whole queues
        return tuple(snapshot.loc[snapshot["queue"] == name, wanted].reset_index(drop=True)
                     for name, (wanted, _) in _QUEUE_COLUMNS.items()) + (previous_at,)
    frames = []
    for name, (wanted, stamps_of) in _QUEUE_COLUMNS.items():
        if not loaded:  # the state the previous load left: from its folder when provably its copy,
            # at the whole seconds the warehouse keeps (SQLite's text; compared as the load's digests do)
            state = previous_state(ctx, name, wanted)[wanted].reset_index(drop=True)
            frames.append(state.assign(**{c: pd.to_datetime(state[c], utc=True).dt.floor("s") for c in stamps_of}))
            continue
        state = wh.read_typed(f"SELECT {', '.join(wanted)} FROM {name}", datetime_columns=stamps_of,
                              bool_columns=("pass_back",))
        undo = wh.read_typed("SELECT * FROM queue_history WHERE run_id = :run_id AND queue = :queue AND "
                             "change IS NOT NULL", datetime_columns=stamps_of, bool_columns=("pass_back",),
                             run_id=ctx.run_id, queue=name)
        state = state[~state["golden_id"].isin(undo["golden_id"])]
        before = undo.loc[undo["change"] == "before", wanted]
        state = pd.concat([state, before], ignore_index=True) if len(before) else state
        frames.append(state.reset_index(drop=True))
    return tuple(frames) + (previous_at,)


def _empty_queue(name: str) -> pd.DataFrame:
    wanted, stamps = _QUEUE_COLUMNS[name]
    return pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c in stamps else "string") for c in wanted})


def flag(ctx: RunContext) -> dict:
    """Raise tonight's flags and carry them through their lifecycle (slowburn.flags.track_flags).

    Rules need the whole touch history (rep contacts, qualifying and disqualifying touches) and every
    outcome seen, mapped to tonight's golden ids. lead_flags is a state table holding every flag's
    lifecycle; tonight's record is the flags open now plus those closed tonight, and the load writes
    only the rows that changed.
    Thresholds: FlagConfig defaults, overridden by the YAML mapping at $SLOWBURN_FLAGS_CONFIG if set.
    """
    import yaml

    from slowburn import warehouse as warehouse_module
    from slowburn.flags import (FLAG_GOLDEN_COLUMNS, FLAG_QUEUE_COLUMNS, REP_TOUCHES, FlagConfig, flag_leads,
                                track_flags)

    cfg_path = os.environ.get("SLOWBURN_FLAGS_CONFIG")
    cfg = FlagConfig.from_mapping(yaml.safe_load(Path(cfg_path).read_text(encoding="utf-8")) if cfg_path else None)
    owners = ctx.read("owners")
    contracts.check(owners, contracts.OWNERS, step="flag")
    golden = _read_used(ctx, "golden_leads", FLAG_GOLDEN_COLUMNS)
    links = ctx.read("lead_links", columns=["source_system", "source_id", "golden_id"])
    wh = ctx.warehouse()
    wh.ensure_schema()
    types = sorted(set(REP_TOUCHES) | set(cfg.qualifying_touches) | set(cfg.disqualifying_touches))
    key = ["source_system", "lead_source_id", "touch_type", "occurred_at"]
    tonight = ctx.read("touches")
    tonight = tonight.loc[tonight["touch_type"].isin(types), key]
    earlier = earlier_touches(ctx, key, types)
    history = pd.concat([earlier, tonight], ignore_index=True).drop_duplicates(key) if len(earlier) else tonight
    history = history.assign(golden_id=_golden_id_of_touches(history, links))
    outcomes = _outcome_history(ctx, wh).merge(links[["source_system", "source_id", "golden_id"]],
                                               on=["source_system", "source_id"])
    from slowburn.ripeness import load_config
    from slowburn.route import RoutingConfig
    # The previous record is the open flags in the warehouse (closed ones are history no run changes).
    # The first attempt keeps what it read in the run folder, so a re-run of a loaded night closes and
    # opens the same flags.
    if ctx.path("previous_lead_flags").exists():
        previous = ctx.read("previous_lead_flags")
    else:
        previous = previous_state(ctx, "lead_flags", where=warehouse_module.SCOPE["lead_flags"])
        if "run_id" in previous:  # warehouse rows from before the lifecycle columns count as opened by their run
            previous["status"] = previous["status"].fillna("open")
            previous["first_run_id"] = previous["first_run_id"].fillna(previous["run_id"])
            opened = pd.to_datetime(previous["run_id"], format="%Y-%m-%dT%H%M%S", errors="coerce", utc=True)
            previous["opened_at"] = previous["opened_at"].fillna(opened)
        previous = previous[previous["status"] == "open"].drop(columns=["run_id"], errors="ignore")
        ctx.write("previous_lead_flags", previous)
    current = flag_leads(golden, ctx.read("lead_scores", columns=["golden_id", "last_touch_at"]), owners, ctx.as_of,
                         cfg, touches=history, outcomes=outcomes,
                         sales_queue=_read_used(ctx, "sales_queue", FLAG_QUEUE_COLUMNS),
                         nurture_queue=_read_used(ctx, "nurture_queue", FLAG_QUEUE_COLUMNS),
                         routing=RoutingConfig.from_config(load_config()), previous=previous)

    record = track_flags(previous, current, ctx.as_of, ctx.run_id, keep_closed=False)
    ctx.write("lead_flags", record)
    is_open = record["status"] == "open"
    return {"lead_flags": int(is_open.sum()), "by_flag": record.loc[is_open, "flag"].value_counts().to_dict(),
            "opened": int((is_open & (record["first_run_id"] == ctx.run_id)).sum()),
            "closed": int((record["closed_at"] == ctx.as_of).sum())}


def ledger_counts(ctx: RunContext) -> dict:
    """The run's proofs: every landed lead linked or quarantined (never both, never neither), every
    golden lead scored exactly once, and every golden lead in at most one queue, exactly once."""
    landed = ctx.read("landed_leads", columns=["row_key"])["row_key"]
    quarantine = ctx.read("quarantine", columns=["entity", "row_key"])
    links = ctx.read("lead_links", columns=["row_key", "run_id"])
    linked_rows = links.loc[links["run_id"] == ctx.run_id, "row_key"]
    quarantined = quarantine.loc[quarantine["entity"] == "leads", "row_key"]
    q_leads = quarantined.nunique()
    q_touches = quarantine.loc[quarantine["entity"] == "touches", "row_key"].nunique()
    linked = linked_rows.nunique()
    # Set algebra by Arrow hash lookups, not Python sets (nor pandas' isin, which boxes every candidate).
    invariant = (len(landed) == linked + q_leads
                 and is_in(landed, linked_rows).sum() + is_in(landed, quarantined).sum() == len(landed)
                 and is_in(linked_rows, landed).all() and is_in(quarantined, landed).all()
                 and not is_in(linked_rows, quarantined).any())
    golden = ctx.read("golden_leads", columns=["golden_id"])["golden_id"]
    scored = ctx.read("lead_scores", columns=["golden_id"])["golden_id"]
    sales = ctx.read("sales_queue", columns=["golden_id"])["golden_id"]
    nurture = ctx.read("nurture_queue", columns=["golden_id"])["golden_id"]
    queued = pd.concat([sales, nurture], ignore_index=True)
    explained = ctx.read("lead_reasons", columns=["golden_id"])["golden_id"]
    scored_ok = (golden.is_unique and scored.is_unique and len(scored) == len(golden)
                 and bool(is_in(scored, golden).all()) and explained.is_unique and bool(is_in(explained, scored).all()))
    queues_ok = (sales.is_unique and nurture.is_unique and not is_in(sales, nurture).any()
                 and bool(is_in(queued, golden).all()))
    not_queued = int((~is_in(golden.drop_duplicates(), queued)).sum())
    return {"landed_leads": len(landed), "linked_leads": linked, "quarantined_leads": q_leads,
            "landed_touches": ctx.rows("landed_touches"), "quarantined_touches": q_touches,
            "scored_leads": len(scored), "queued_leads": int(queued.nunique()), "not_queued_leads": not_queued,
            "landed_ok": bool(invariant), "scored_ok": bool(scored_ok), "queues_ok": bool(queues_ok),
            "invariant_ok": bool(invariant and scored_ok and queues_ok)}


def load(ctx: RunContext) -> dict:
    """Commit the run in one transaction, after proving it lost and doubled nothing.

    Every file it reads must carry this attempt's token; the warehouse transaction proves that this
    attempt still holds the run lock and that no newer run has loaded, and releases the lock.
    """
    counts = ledger_counts(ctx)
    problems = []
    if not counts["landed_ok"]:
        problems.append(f"landed ({counts['landed_leads']}) != linked ({counts['linked_leads']}) + quarantined "
                        f"({counts['quarantined_leads']})")
    if not counts["scored_ok"]:
        problems.append(f"scored ({counts['scored_leads']}) != golden ({ctx.rows('golden_leads')}) "
                        "(every golden lead is scored exactly once)")
    if not counts["queues_ok"]:
        problems.append(f"queued ({counts['queued_leads']}) + not queued ({counts['not_queued_leads']}) do not "
                        "account for every golden lead once (a lead in both queues, twice in one, or unknown)")
    if problems:
        raise ContractError(f"run {ctx.run_id} attempt {ctx.attempt}: " + "; ".join(problems)
                            + "; refusing to load a run that lost or doubled rows")
    watermarks = ctx.read_json("watermarks")
    # Each table is read when the warehouse inserts it and freed after: a 1M-lead run must not hold
    # every table at once.
    frames = {
        "landed_leads": lambda: ctx.read("landed_leads").rename(columns={"__malformed_line__": "malformed_line"}),
        "quarantine": lambda: ctx.read("quarantine").rename(columns={"column": "column_name"}),
        **{name: (lambda name=name: ctx.read(name)) for name in (
            "touches", "current_leads", "golden_leads", "lead_links", "lead_scores", "lead_reasons", "sales_queue",
            "nurture_queue", "lead_flags", "owners")},
        # outcomes are facts kept once per source lead: its latest close wins (as _outcome_history reads them)
        "outcomes": lambda: ctx.read("outcomes").sort_values("closed_at", kind="stable", na_position="first"),
        "source_watermarks": pd.DataFrame(watermarks["sources"]).assign(logical_date=ctx.logical_date),
    }
    ledger = {
        **{k: v for k, v in counts.items() if k not in ("landed_ok", "scored_ok", "queues_ok")},
        "logical_date": ctx.logical_date, "status": "success",
        "started_at": pd.Timestamp(watermarks["started_at"]),
        "finished_at": pd.Timestamp.now(tz="UTC"),
        "attempt": ctx.attempt, "attempt_token": ctx.token,
        **{name: ctx.rows(name) for name in ("golden_leads", "sales_queue", "nurture_queue", "lead_flags")},
        "step_counts": json.dumps(read_step_counts(ctx), default=str),
    }
    written = ctx.warehouse().replace_run(ctx.run_id, frames, ledger, token=ctx.token, digests=_state_digests(ctx))
    log.info("load: run %s attempt %s committed: %d landed = %d linked + %d quarantined; %d scored = %d golden "
             "= %d queued + %d not queued", ctx.run_id, ctx.attempt, counts["landed_leads"], counts["linked_leads"],
             counts["quarantined_leads"], counts["scored_leads"], ledger["golden_leads"], counts["queued_leads"],
             counts["not_queued_leads"])
    return {**{k: v for k, v in ledger.items() if k not in ("step_counts", "attempt_token")},
            "rows_written": written}


def _state_digests(ctx: RunContext):
    """The previous load's state digests from its attempt folder (read only if the ledger's token proves
    it is the loaded copy, and used only if the table's checksum agrees); tonight's are kept in ours."""
    from slowburn.warehouse import StateDigests

    runs = _loaded_runs(ctx)
    last = runs.iloc[-1] if runs is not None and not runs.empty else None

    def previous(table):
        return None if last is None else _loaded_output(ctx, last, f"{table}_digests")

    return StateDigests(previous, lambda table, frame: ctx.write(f"{table}_digests", frame))


def summarize(ctx: RunContext) -> dict:
    from slowburn.report.summary import write_run_summary
    return write_run_summary(ctx)


STEP_FUNCTIONS = {"extract": extract, "normalise": normalise, "validate": validate, "dedupe": dedupe,
                  "score": score, "route": route, "flag": flag, "load": load, "summarize": summarize}


def read_step_counts(ctx: RunContext) -> dict:
    path = ctx.run_dir / "step_counts.json"
    if not path.exists():
        return {}
    counts = json.loads(path.read_text(encoding="utf-8"))
    counts.pop(ATTEMPT_KEY, None)
    return counts


def run_step(ctx: RunContext, step: str) -> dict:
    """Run one step and record its counts in the attempt folder, for the ledger and the summary.

    extract starts a new attempt; every step but summarize first takes or renews the warehouse run
    lock, so a second run at the same time stops with RunLocked before it does any work.
    """
    from slowburn.warehouse import Warehouse

    if step not in STEP_FUNCTIONS:
        raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
    if step == "extract":
        Warehouse(ctx.warehouse_url).refuse_older_run(ctx.run_id)  # before the lock: a refusal holds nothing
        ctx.start_attempt()
    if step != "summarize":
        ctx.warehouse().acquire_run_lock(ctx.run_id, ctx.attempt or _resolved_attempt(ctx), ctx.token)
    started = time.perf_counter()
    log.info("step %s: starting run %s attempt %s", step, ctx.run_id, ctx.attempt)
    try:
        result = STEP_FUNCTIONS[step](ctx)
    except BaseException:
        if step == "extract":  # the attempt produced nothing: another run may go ahead meanwhile
            ctx.warehouse().release_run_lock(ctx.run_id, token=ctx.token)
        raise
    seconds = time.perf_counter() - started
    log.info("step %s: done in %.1f s: %s", step, seconds, result)
    counts = read_step_counts(ctx)
    counts[step] = {**result, "seconds": round(seconds, 2)}
    ctx.write_json("step_counts", counts)
    return result


def _resolved_attempt(ctx: RunContext) -> int:
    ctx.run_dir  # noqa: B018 - resolves the newest attempt when none was given
    return ctx.attempt


def run_all(ctx: RunContext) -> dict:
    return {step: run_step(ctx, step) for step in STEPS}
