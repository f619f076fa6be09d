#!/usr/bin/env python
"""One pipeline step, two versions of the code, on one saved state, alternately: A B A B ...

    python bench/ab_step.py STEP --home H --sources S --logical-date D --a REF [--b REF] [--repeats 3]

On this VM the same code's 1M night took 92.5 s and 114.4 s twenty minutes apart, so a change worth
less than ~20% cannot be credited from two pipeline benches. This runs STEP on fresh copies of the
same home folder (its run folder must hold the outputs of the steps before STEP; keep one with
`bench_pipeline.py --keep-homes` or by running `slowburn step` up to there), code A and code B in
turn, each a `git archive` snapshot (B defaults to the working tree), and reports per version the
median wall, in-step, CPU and peak RSS, B / A, and whether every Parquet file the step wrote is equal
between the two (pandas `DataFrame.equals`, file for file).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import (REPO, _child_env, _median, read_step_counts, run_id_for, run_measured,  # noqa: E402
                            snapshot_code)


def _attempt_dir(home: Path, logical_date: str) -> Path:
    attempts = sorted((home / "runs" / run_id_for(logical_date)).glob("attempt-*"),
                      key=lambda p: int(p.name.split("-")[1]))
    if not attempts:
        sys.exit(f"ab_step: {home} has no run folder for {logical_date}; run the steps before this one first")
    return attempts[-1]


def _written_by_step(before: Path, after: Path) -> list[str]:
    """Parquet files in the attempt folder that the step created or rewrote."""
    names = []
    for path in sorted(after.glob("*.parquet")):
        old = before / path.name
        if not old.exists() or old.stat().st_mtime_ns != path.stat().st_mtime_ns:
            names.append(path.name)
    return names


def _same(a: Path, b: Path) -> bool:
    import pandas as pd
    return pd.read_parquet(a).equals(pd.read_parquet(b))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step")
    ap.add_argument("--home", required=True, type=Path, help="the saved state (never changed: copies are run)")
    ap.add_argument("--sources", required=True)
    ap.add_argument("--logical-date", required=True)
    ap.add_argument("--a", required=True, help="git ref of version A")
    ap.add_argument("--b", help="git ref of version B (default: the working tree)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/slowburn-ab"))
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    versions = {"A": snapshot_code(args.a, args.workdir)[0],
                "B": snapshot_code(args.b, args.workdir)[0] if args.b else REPO}
    source_attempt = _attempt_dir(args.home, args.logical_date)
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    kept: dict[str, Path] = {}
    for rep in range(args.repeats):
        for name, code in versions.items():
            home = args.workdir / f"home-{name}"
            shutil.rmtree(home, ignore_errors=True)
            shutil.copytree(args.home, home, symlinks=True)
            cmd = [sys.executable, "-m", "slowburn.cli", "step", args.step, "--sources", args.sources,
                   "--home", str(home), "--logical-date", args.logical_date]
            res = run_measured(cmd, args.workdir / f"{name}-{rep + 1}.log", args.workdir, _child_env(code))
            if res["exit_code"] != 0:
                sys.exit(f"ab_step: version {name} failed (exit {res['exit_code']}); "
                         f"see {args.workdir}/{name}-{rep + 1}.log")
            res["in_step_s"] = read_step_counts(home, args.logical_date).get(args.step, {}).get("seconds")
            runs[name].append(res)
            print(f"  {name} #{rep + 1}: wall {res['wall_s']:.2f} s, in-step {res['in_step_s']} s, "
                  f"CPU {res['user_s'] + res['sys_s']:.2f} s, peak {res['maxrss_kib'] / 1024:.0f} MiB", flush=True)
            kept[name] = home
    medians = {name: {"wall": _median([r["wall_s"] for r in rs]),
                      "in_step": _median([r["in_step_s"] for r in rs if r["in_step_s"] is not None]),
                      "cpu": _median([r["user_s"] + r["sys_s"] for r in rs]),
                      "peak_mib": max(r["maxrss_kib"] for r in rs) / 1024} for name, rs in runs.items()}
    print(f"\n{args.step}: medians of {args.repeats}, A = {args.a}, B = {args.b or 'working tree'}")
    for key in ("wall", "in_step", "cpu", "peak_mib"):
        a, b = medians["A"][key], medians["B"][key]
        ratio = f"{b / a:.3f}" if a else "-"
        print(f"  {key:9s} A {a:9.2f}   B {b:9.2f}   B/A {ratio}")
    written = _written_by_step(source_attempt, _attempt_dir(kept["A"], args.logical_date))
    differ = [n for n in written if not _same(_attempt_dir(kept["A"], args.logical_date) / n,
                                               _attempt_dir(kept["B"], args.logical_date) / n)]
    print(f"  outputs: {len(written)} Parquet file(s) written; "
          + ("all equal" if not differ else f"DIFFERENT: {', '.join(differ)}"))
    return 0 if not differ else 1


if __name__ == "__main__":
    raise SystemExit(main())
