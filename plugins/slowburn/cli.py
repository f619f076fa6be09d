"""`slowburn …`: every pipeline step runnable outside Airflow, for debugging and benchmarks."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import pandas as pd


def _context(args):
    from slowburn.pipeline import RunContext
    try:
        logical_date = pd.Timestamp(args.logical_date) if args.logical_date else pd.Timestamp.now(tz="UTC").normalize()
    except ValueError:
        raise UsageError(f"--logical-date {args.logical_date!r} is not a date; use e.g. 2026-11-24") from None
    return RunContext(
        logical_date=logical_date,
        sources_path=Path(args.sources or os.environ.get("SLOWBURN_SOURCES", ".slowburn/sample/sources.yaml")),
        home=Path(args.home or os.environ.get("SLOWBURN_HOME", ".slowburn")),
        warehouse_url=args.warehouse or os.environ.get("SLOWBURN_WAREHOUSE_URL"),
        attempt=getattr(args, "attempt", None),
        artifacts=_artifacts(args),
    )


def _artifacts(args):
    """--artifacts / $SLOWBURN_ARTIFACTS as a location, with $SLOWBURN_ARTIFACTS_OPTIONS as its fsspec options."""
    from slowburn import storage
    url = getattr(args, "artifacts", None) or os.environ.get("SLOWBURN_ARTIFACTS")
    if not url:
        return None  # the run folders and models live in --home
    try:
        return storage.location(url, storage.options_from_env())
    except ValueError as exc:
        raise UsageError(str(exc)) from None


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says which and how to fix it."""


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sources", help="sources YAML (default: $SLOWBURN_SOURCES or .slowburn/sample/sources.yaml)")
    p.add_argument("--home", help="working folder for run artefacts (default: $SLOWBURN_HOME or .slowburn)")
    p.add_argument("--warehouse", help="SQLAlchemy URL (default: $SLOWBURN_WAREHOUSE_URL or SQLite in --home)")
    p.add_argument("--artifacts", help="where run folders and models live: a folder or an fsspec URL such as "
                                       "s3://bucket/prefix (default: $SLOWBURN_ARTIFACTS or --home); fsspec "
                                       "options (e.g. endpoint_url) as JSON in $SLOWBURN_ARTIFACTS_OPTIONS")
    p.add_argument("--logical-date", help="the run's logical date, e.g. 2026-11-24 (default: today, UTC)")
    p.add_argument("--attempt", type=int, help="the attempt folder (runs/<run>/attempt-<n>) a step or status "
                                               "works in (default: the newest; `run` and `step extract` start one)")


def cmd_sample(args) -> int:
    from slowburn.sample import generate, next_night
    if args.next_night:
        manifest = next_night(args.next_night, changed_fraction=args.changed, new_fraction=args.new,
                              seed=args.seed, out=args.out)
        print(json.dumps(manifest["last_night"], indent=2, default=str))
        print(f"night {manifest['night']} written to {manifest['out_dir']}: run it with --logical-date "
              f"{pd.Timestamp(manifest['now']).strftime('%Y-%m-%d')} (sources file: {manifest['files']['sources']})")
        return 0
    if not args.out:
        raise UsageError("give --out FOLDER for a new sample, or --next-night FOLDER for the next night of one")
    manifest = generate(args.out, n_leads=args.leads, seed=0 if args.seed is None else args.seed,
                        now=pd.Timestamp(args.now).to_pydatetime() if args.now else None)
    print(json.dumps(manifest["counts"], indent=2, default=str))
    print(f"sample sources written to {Path(args.out).resolve()} (sources file: {manifest['files']['sources']})")
    return 0


def cmd_run(args) -> int:
    from slowburn.pipeline import run_all
    ctx = _context(args)
    run_all(ctx)
    return cmd_status(args)


def cmd_step(args) -> int:
    from slowburn.pipeline import run_step
    ctx = _context(args)
    print(json.dumps(run_step(ctx, args.name), indent=2, default=str))
    return 0


def cmd_status(args) -> int:
    """Print a finished run's counts per step and where its results are."""
    ctx = _context(args)
    path = ctx.run_dir / "summary.json"
    if not path.exists():
        print(f"slowburn: run {ctx.run_id} has no summary at {path}; did it finish?", file=sys.stderr)
        return 1
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{path} is damaged ({exc}); re-run `slowburn step summarize` for this run") from None
    _print_results(ctx, summary["steps"], summary["ledger"], summary["warehouse"])
    return 0 if summary["ledger"]["invariant_ok"] else 1


def cmd_dedupe(args) -> int:
    """Link a file of leads (contract columns, any of them may be missing) into golden ids."""
    import tempfile

    from slowburn import contracts
    from slowburn.dedupe import dedupe_leads
    from slowburn.dedupe.config import load_config
    from slowburn.normalize import normalise_leads

    path = Path(args.input)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        raw = pd.read_parquet(path)
    else:
        raw = pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""], encoding=args.encoding)
    n = len(raw)
    landed = pd.DataFrame(index=raw.index)
    for col in contracts.LEADS.names:
        landed[col] = raw[col].astype("string") if col in raw.columns else pd.Series(pd.NA, index=raw.index,
                                                                                       dtype="string")
    row_no = pd.Series(range(1, n + 1), index=raw.index).astype(str)
    landed["source_system"] = landed["source_system"].fillna("input")
    landed["source_id"] = landed["source_id"].fillna(row_no)
    landed.insert(0, "row_key", "input:" + row_no)
    landed.insert(1, "source_name", "input")
    leads, problems = normalise_leads(landed, {"input": args.region})
    if len(problems):
        print(f"slowburn dedupe: {len(problems)} cell(s) could not be read and are treated as empty",
              file=sys.stderr)
    cfg = load_config(args.config)
    if args.threshold is not None:
        cfg = cfg.with_overrides(thresholds={"match_probability": args.threshold,
                                             "review_probability": min(args.threshold,
                                                                       cfg.review_probability)})
    with tempfile.TemporaryDirectory(prefix="slowburn-dedupe-") as tmp:
        result = dedupe_leads(leads, None, cfg, model_dir=Path(args.model_dir) if args.model_dir else None,
                              run_dir=Path(tmp), retrain=args.retrain)
    out = result.links[["source_system", "source_id", "golden_id", "match_probability"]]
    target = Path(args.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    from slowburn import atomic
    if target.suffix.lower() in (".parquet", ".pq"):
        atomic.write_parquet(target, out)
    else:
        atomic.write_text(target, out.to_csv(index=False, lineterminator="\n"))
    rep = result.report
    print(json.dumps({"rows": n, "golden_ids": int(out["golden_id"].nunique()), "mode": rep.get("mode"),
                      "reason": rep.get("reason"), "by_rule": rep.get("by_rule"), "review_pairs": rep.get("review_pairs"),
                      "seconds": rep.get("seconds"), "out": str(target.resolve())}, indent=2, default=str))
    return 0


def cmd_writeback(args) -> int:
    """Plan the write-back from the warehouse and write it as JSONL, sending nothing."""
    from slowburn.writeback import WritebackConfig, run_writeback
    ctx = _context(args)
    cfg = WritebackConfig.load(args.config or os.environ.get("SLOWBURN_WRITEBACK"))
    report = run_writeback(ctx.warehouse_url, {}, cfg, dry_run=True, plan_dir=ctx.home / "writeback")
    result = report.as_dict()
    print(json.dumps({k: v for k, v in result.items() if k not in ("sample", "failed")}, indent=2, default=str))
    print(f"plan: {(ctx.home / 'writeback').resolve()}/writeback_plan_{report.run_id}.jsonl "
          "(sending runs in the slowburn_writeback DAG, with the vendors' Airflow Connections)")
    return 0


def cmd_review(args) -> int:
    """Write the weekly lead review (HTML + CSV per rep and team) for the week of --logical-date."""
    from slowburn.report.review import write_weekly_review
    ctx = _context(args)
    headline = write_weekly_review(ctx.warehouse(), ctx.home / "reviews", ctx.logical_date)
    print(json.dumps(headline, indent=2, default=str))
    return 0


def cmd_unlock(args) -> int:
    """Release the warehouse run lock left by a run that died (see `slowburn status` for what holds it)."""
    ctx = _context(args)
    wh = ctx.warehouse()
    held = wh.run_lock()
    if held is None:
        print("slowburn: the warehouse is not locked")
        return 0
    if args.run_id and held["run_id"] != args.run_id:
        raise UsageError(f"the lock is held by run {held['run_id']}, not {args.run_id}; nothing released")
    wh.release_run_lock(held["run_id"])
    print(f"slowburn: released the lock of run {held['run_id']} attempt {held['attempt']} ({held['holder']}, "
          f"last active {held['heartbeat_at']})")
    return 0


def cmd_db(args) -> int:
    """Upgrade the warehouse schema to the newest migration, or print the revision it is at."""
    from slowburn.migrations import head
    from slowburn.pipeline import default_warehouse_url
    from slowburn.warehouse import Warehouse, redacted

    home = Path(args.home or os.environ.get("SLOWBURN_HOME", ".slowburn"))
    url = args.warehouse or os.environ.get("SLOWBURN_WAREHOUSE_URL") or default_warehouse_url(home)
    wh = Warehouse(url)
    before = wh.schema_revision()
    if args.action == "upgrade":
        revision = wh.upgrade_schema()
        change = "already at head" if before == revision else f"upgraded from {before or 'none'}"
        print(f"slowburn: warehouse {redacted(url)} at revision {revision} ({change})")
    elif before == head():
        print(f"slowburn: warehouse {redacted(url)} at revision {before} (head)")
    else:
        print(f"slowburn: warehouse {redacted(url)} at revision {before or 'none'}; head is {head()}: run "
              "`slowburn db upgrade` (every pipeline step also upgrades it first)")
    return 0


def cmd_model(args) -> int:
    from slowburn.ripeness import commands

    ctx = _context(args)
    if args.action == "explain":
        if not args.lead:
            print("slowburn: error: `slowburn model explain` needs a LEAD (golden id, source_system:source_id "
                  "or email)", file=sys.stderr)
            return 2
        print(commands.explain(ctx, args.lead))
    else:
        print(getattr(commands, args.action)(ctx))
    return 0


def _print_results(ctx, steps: dict, ledger: dict, warehouse: str) -> None:
    from slowburn.storage import shown
    print(f"\nslowburn run {ctx.run_id}")
    for step, counts in steps.items():
        flat = ", ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict) and k != "data_docs")
        print(f"  {step:<10} {flat}")
    balanced = "balanced" if ledger["invariant_ok"] else "NOT BALANCED"
    print(f"\nledger: landed {ledger['landed_leads']} = linked {ledger['linked_leads']} + quarantined "
          f"{ledger['quarantined_leads']} ({balanced})")
    if ledger.get("scored_leads") is not None:
        print(f"        scored {ledger['scored_leads']} = golden {ledger['golden_leads']} = queued "
              f"{ledger['queued_leads']} + not queued {ledger['not_queued_leads']}")
    print(f"attempt:     {ctx.attempt} ({shown(ctx.run_dir)})")
    print(f"warehouse:   {warehouse}")
    print(f"data docs:   {steps.get('validate', {}).get('data_docs')}")
    print(f"run summary: {shown(ctx.run_dir / 'summary.html')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slowburn", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="write realistic sample sources with planted truth, or their next night")
    p.add_argument("--out", help="folder to write (with --next-night: a copy to write the next night into "
                                 "instead of changing FOLDER in place)")
    p.add_argument("--leads", type=int, default=5000)
    p.add_argument("--seed", type=int, help="random seed (default 0; with --next-night: the sample's own)")
    p.add_argument("--now", help="timestamps are generated up to this moment (default: today, UTC)")
    p.add_argument("--next-night", metavar="FOLDER",
                   help="move a generated sample one day on: changed, new and touched leads dated in the next "
                        "data interval, so the run at the next logical date pulls only them")
    p.add_argument("--changed", type=float, default=0.01,
                   help="with --next-night: share of CRM and marketing leads that change (default 0.01)")
    p.add_argument("--new", type=float, default=0.003,
                   help="with --next-night: new leads as a share of the existing ones (default 0.003)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("run", help="run the whole nightly pipeline without Airflow")
    _run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("writeback", help="dry-run the CRM and email write-back: what would be sent")
    _run_options(p)
    p.add_argument("--config", help="write-back YAML (default: $SLOWBURN_WRITEBACK or built-in defaults)")
    p.set_defaults(func=cmd_writeback)

    p = sub.add_parser("review", help="write the weekly lead-review report per rep and team")
    _run_options(p)
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("unlock", help="release the warehouse run lock of a run that died")
    _run_options(p)
    p.add_argument("--run-id", help="only release the lock if this run holds it")
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser("db", help="warehouse schema: upgrade (run the migrations) or current (print the revision)")
    p.add_argument("action", choices=("upgrade", "current"))
    p.add_argument("--home", help="working folder whose warehouse.db is the default warehouse "
                                  "(default: $SLOWBURN_HOME or .slowburn)")
    p.add_argument("--warehouse", help="SQLAlchemy URL (default: $SLOWBURN_WAREHOUSE_URL or SQLite in --home)")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("status", help="print a finished run's counts and result paths")
    _run_options(p)
    p.set_defaults(func=cmd_status)

    from slowburn.pipeline import STEPS
    p = sub.add_parser("step", help="run one pipeline step on an existing run folder")
    p.add_argument("name", choices=STEPS)
    _run_options(p)
    p.set_defaults(func=cmd_step)

    p = sub.add_parser("model", help="ripeness model: train (the score step), backtest, explain LEAD")
    p.add_argument("action", choices=("train", "backtest", "explain"))
    p.add_argument("lead", nargs="?", help="for explain: golden id, source_system:source_id or email")
    _run_options(p)
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("dedupe", help="link a CSV or Parquet of leads into golden ids")
    p.add_argument("input", help="CSV or Parquet with lead contract columns (any may be missing)")
    p.add_argument("--out", required=True, help="output .csv or .parquet: source_system, source_id, golden_id, "
                                                 "match_probability")
    p.add_argument("--config", help="dedupe YAML (default: $SLOWBURN_DEDUPE_CONFIG or include/config/dedupe.yaml)")
    p.add_argument("--model-dir", help="reuse/save the trained Splink model here (default: train, do not save)")
    p.add_argument("--retrain", action="store_true", help="train even if --model-dir has a usable model")
    p.add_argument("--threshold", type=float, help="match probability needed to merge (default from config)")
    p.add_argument("--region", default="US", help="default phone region for numbers without a country")
    p.add_argument("--encoding", default="utf-8", help="CSV encoding (default utf-8)")
    p.set_defaults(func=cmd_dedupe)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("slowburn: interrupted; nothing was committed by an unfinished load", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into a clear message
        return report_error(exc, verbose=args.verbose)


def report_error(exc: BaseException, verbose: bool = False) -> int:
    """Print what failed, where (file, line, column) and the fix, with secrets removed; 2 = bad input
    or refused run, 1 = a bug. The traceback is printed only with -v, scrubbed the same way."""
    import traceback

    message, code = explain(exc)
    if verbose:
        print(scrub("".join(traceback.format_exception(exc))), file=sys.stderr)
    print(f"slowburn: error: {scrub(message)}", file=sys.stderr)
    if code == 1 and not verbose:
        print("slowburn: this looks like a bug; run with -v for the traceback", file=sys.stderr)
    return code


def explain(exc: BaseException) -> tuple[str, int]:
    """The message for an exception and the exit code; library errors get the file and the fix."""
    import sqlalchemy as sa
    import yaml

    from slowburn.contracts import ContractError
    from slowburn.warehouse import RunRefused

    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        name = mark.name if mark is not None and not mark.name.startswith("<") else None
        name = name or _file_in_traceback(exc, (".yaml", ".yml")) or "a YAML file"
        where = f"{name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return (f"{where}: not valid YAML ({problem}); fix the file there (indentation, a missing ':' or an "
                "unclosed quote or bracket)", 2)
    if _is_arrow_error(exc):
        name = _file_in_traceback(exc, (".parquet", ".pq")) or "a Parquet file"
        return (f"{name}: not a readable Parquet file ({str(exc).splitlines()[0]}); it is truncated or not "
                "Parquet: re-export it, or for a run-folder file re-run the step that writes it", 2)
    if isinstance(exc, sa.exc.ArgumentError):
        return (f"the warehouse URL cannot be used ({str(exc).splitlines()[0]}); give --warehouse or "
                "$SLOWBURN_WAREHOUSE_URL as a SQLAlchemy URL, e.g. postgresql://user@host:5432/db or "
                "sqlite:////abs/path/warehouse.db", 2)
    if isinstance(exc, sa.exc.DBAPIError):
        from slowburn.warehouse import redacted
        reason = " ".join(str(exc.orig).split()) if exc.orig is not None else type(exc).__name__
        url = _warehouse_url_in_traceback(exc)
        target = f"the warehouse {redacted(url)}" if url else "the warehouse"
        return (f"{target} failed: {reason}. Check that the database is running and reachable and that the "
                "URL's host, port, user and database are right (--warehouse, $SLOWBURN_WAREHOUSE_URL or the "
                "slowburn_warehouse Connection)", 2)
    if isinstance(exc, (RunRefused, ContractError)):
        return str(exc), 2
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)) and exc.filename:
        what = {FileNotFoundError: "does not exist", IsADirectoryError: "is a folder, not a file",
                PermissionError: "cannot be read or written (permissions)"}[type(exc)]
        return f"{exc.filename} {what}; check the path", 2
    if isinstance(exc, (FileNotFoundError, UsageError)):
        return str(exc), 2
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}; check the path and that it can be written", 2
    if type(exc).__name__ in ("ConnectorError", "WritebackFailed", "RipenessConfigError", "RequestException",
                              "ConnectionError", "Timeout") or _is_requests_error(exc):
        return f"{exc}", 2
    return f"unexpected {type(exc).__name__}: {exc}", 1


def _is_arrow_error(exc) -> bool:
    try:
        import pyarrow as pa
    except ImportError:
        return False
    return isinstance(exc, pa.ArrowException)


def _is_requests_error(exc) -> bool:
    try:
        import requests
    except ImportError:
        return False
    return isinstance(exc, requests.RequestException)


def _frames_locals(exc):
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_locals)
        tb = tb.tb_next
    return reversed(frames)  # innermost first


def _file_in_traceback(exc, suffixes: tuple[str, ...]) -> str | None:
    """The file a library was reading when it failed: the innermost `path`-like local with that suffix."""
    for local in _frames_locals(exc):
        for key in ("path", "source", "cfg_path", "file", "filename", "fh"):
            value = local.get(key)
            value = getattr(value, "name", value)
            if isinstance(value, (str, Path)) and str(value).lower().endswith(suffixes):
                return str(value)
    return None


def _warehouse_url_in_traceback(exc) -> str | None:
    for local in _frames_locals(exc):
        wh = local.get("self")
        if type(wh).__name__ == "Warehouse":
            return wh.url
    return None


def scrub(text: str) -> str:
    """Remove passwords in URLs, bearer tokens and the values of secret-looking environment variables."""
    import re

    text = re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
    text = re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+", r"\1***", text)
    text = re.sub(r"(?i)((?:password|passwd|token|secret|api_key|apikey)[\"']?\s*[=:]\s*[\"']?)[^\s\"',&]+",
                  r"\1***", text)
    for name, value in os.environ.items():
        if len(value) >= 6 and re.search(r"(?i)token|secret|password|passwd|api_?key|credential", name):
            text = text.replace(value, "***")
    return text


def console() -> None:
    """The `slowburn` command: main(), then leave the way Airflow's task processes do
    (airflow.sdk.execution_time.supervisor._fork_main ends in os._exit after flushing): with the
    database connections closed and the logs and output flushed, the interpreter's teardown of a
    step's heap (about half a second after a 1M-lead step, every object freed one by one) is skipped."""
    code = main()
    from slowburn.db import dispose_engines

    dispose_engines()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
