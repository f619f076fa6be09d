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
    return RunContext(
        logical_date=pd.Timestamp(args.logical_date) if args.logical_date else pd.Timestamp.now(tz="UTC").normalize(),
        sources_path=Path(args.sources or os.environ.get("SLOWBURN_SOURCES", ".slowburn/sample/sources.yaml")),
        home=Path(args.home or os.environ.get("SLOWBURN_HOME", ".slowburn")),
        warehouse_url=args.warehouse or os.environ.get("SLOWBURN_WAREHOUSE_URL"),
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sources", help="sources YAML (default: $SLOWBURN_SOURCES or .slowburn/sample/sources.yaml)")
    p.add_argument("--home", help="working folder for run artefacts (default: $SLOWBURN_HOME or .slowburn)")
    p.add_argument("--warehouse", help="SQLAlchemy URL (default: $SLOWBURN_WAREHOUSE_URL or SQLite in --home)")
    p.add_argument("--logical-date", help="the run's logical date, e.g. 2026-11-24 (default: today, UTC)")


def cmd_sample(args) -> int:
    from slowburn.sample import generate
    manifest = generate(args.out, n_leads=args.leads, seed=args.seed,
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
    summary = json.loads(path.read_text(encoding="utf-8"))
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
    if target.suffix.lower() in (".parquet", ".pq"):
        out.to_parquet(target, index=False)
    else:
        out.to_csv(target, index=False, lineterminator="\n")
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
    print(f"\nslowburn run {ctx.run_id}")
    for step, counts in steps.items():
        flat = ", ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict) and k != "data_docs")
        print(f"  {step:<10} {flat}")
    balanced = "balanced" if ledger["invariant_ok"] else "NOT BALANCED"
    print(f"\nledger: landed {ledger['landed_leads']} = linked {ledger['linked_leads']} + quarantined "
          f"{ledger['quarantined_leads']} ({balanced})")
    print(f"warehouse:   {warehouse}")
    print(f"data docs:   {steps.get('validate', {}).get('data_docs')}")
    print(f"run summary: {(ctx.run_dir / 'summary.html').resolve()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slowburn", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="write realistic sample sources with planted truth")
    p.add_argument("--out", required=True)
    p.add_argument("--leads", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--now", help="timestamps are generated up to this moment (default: today, UTC)")
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
    from slowburn.contracts import ContractError
    try:
        return args.func(args)
    except (ContractError, FileNotFoundError) as exc:
        print(f"slowburn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
