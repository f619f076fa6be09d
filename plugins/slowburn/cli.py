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

    p = sub.add_parser("status", help="print a finished run's counts and result paths")
    _run_options(p)
    p.set_defaults(func=cmd_status)

    from slowburn.pipeline import STEPS
    p = sub.add_parser("step", help="run one pipeline step on an existing run folder")
    p.add_argument("name", choices=STEPS)
    _run_options(p)
    p.set_defaults(func=cmd_step)

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
