#!/usr/bin/env python
"""Benchmark the slowburn nightly pipeline without Airflow: wall time and peak memory per step.

For each size the sample sources are generated once (and cached in the work folder, keyed by
n_leads/seed/now in their manifest.json). For each repeat a fresh home folder (so a fresh SQLite
warehouse) is created and every step runs as its own subprocess, exactly as an Airflow task would:

    python -m slowburn.cli step NAME --sources ... --home ... --logical-date 2026-11-23

Per step we record
  * wall s     -- time.perf_counter() around Popen .. os.wait4(): includes interpreter start-up and
                  the pandas/pyarrow/GX imports, i.e. what one Airflow task pays;
  * in-step s  -- the "seconds" the step itself writes into <home>/runs/<run_id>/step_counts.json
                  (the step's own compute and I/O, without imports);
  * peak RSS   -- the child's ru_maxrss from os.wait4() (KiB on Linux).

An "imports baseline" (a subprocess that only imports slowburn.pipeline, pandas and
great_expectations) is measured too, so readers can subtract the fixed per-task overhead.

With --nights 2 each repeat runs two nights on one warehouse, as production does: night 1 at the
logical date on a fresh warehouse, then `slowburn sample --next-night` (about 1% of the leads
changed, 0.3% new, 3% touched, all dated in the next day) and night 2 at the next logical date.
Both nights are reported per step, with night 2 / night 1 and the rows written per warehouse table
(the load's own rows_written from step_counts.json, else the rows carrying the night's run_id).

Usage:  python bench/bench_pipeline.py --sizes 100000 1000000 --repeats 3
        python bench/bench_pipeline.py --sizes 100000 1000000 --nights 2 --repeats 3
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata as md
import json
import os
import platform
import resource
import shutil
import statistics
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

# NOTE: this parent process deliberately does not import pandas (or anything heavy). On Linux a
# child's ru_maxrss starts from the RSS high-water mark of the address space it exec()s from
# (vfork shares the parent's), so a small parent keeps the children's peak-memory numbers honest.

REPO = Path(__file__).resolve().parents[1]
CODE_ROOT = REPO  # where plugins/ and include/ are taken from; a `git archive` snapshot with --code REF
STEPS = ("extract", "normalise", "validate", "dedupe", "score", "route", "flag", "load", "summarize")
LOGICAL_DATE = "2026-11-23"
DEFAULT_NOW = "2026-11-23"
LOG_TAIL_LINES = 40

# Targets: size -> (max end-to-end seconds, max peak RSS bytes or None)
TARGETS = {
    100_000: (60.0, None),
    1_000_000: (600.0, 6 * 10**9),
}
# Two nights (issue 13, "a night costs what changed"): size -> first night (s, bytes), second night
# (s, bytes) and the most the second may cost as a share of the first. Other sizes check night 1
# against TARGETS and show the ratio for information.
NIGHT_TARGETS = {
    1_000_000: {"night1": (300.0, 4 * 10**9), "night2": (30.0, 2 * 10**9), "ratio": 0.1},
}
NIGHT_RATIO = 0.1

BASELINES = {
    # what every `slowburn step` subprocess imports before it does any work
    "imports: slowburn.cli + slowburn.pipeline + pandas":
        "import pandas, slowburn.cli, slowburn.pipeline",
    # the baseline the brief asks for (GX is imported by the validate step only)
    "imports: slowburn.pipeline + pandas + great_expectations":
        "import slowburn.pipeline, pandas, great_expectations",
}


# ---------------------------------------------------------------------------------------- helpers

def _mib(kib: float) -> float:
    return kib / 1024.0


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


def _child_env(code_root: Path | None = None) -> dict:
    code_root = code_root or CODE_ROOT
    env = dict(os.environ)
    if code_root != REPO:
        # PYTHONPATH beats the editable install's .pth entry, so `slowburn` comes from the snapshot
        env["PYTHONPATH"] = os.pathsep.join([str(code_root / "plugins"), *filter(None, [env.get("PYTHONPATH")])])
        env["SLOWBURN_INCLUDE_DIR"] = str(code_root / "include")
    # the bench decides where the run lives and which warehouse it uses: a fresh SQLite in --home
    for var in ("SLOWBURN_WAREHOUSE_URL", "SLOWBURN_HOME", "SLOWBURN_SOURCES"):
        env.pop(var, None)
    env["GX_ANALYTICS_ENABLED"] = "false"
    env.setdefault("PYTHONHASHSEED", "0")
    if (REPO / "include" / "sql").is_dir():
        env.setdefault("SLOWBURN_INCLUDE_DIR", str(REPO / "include"))
    return env


def run_measured(cmd: list[str], log_path: Path, cwd: Path, env: dict) -> dict:
    """Run cmd with stdout+stderr to log_path; return wall seconds, exit code and the child's peak RSS."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(cwd), env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        wall = time.perf_counter() - started
    load1 = os.getloadavg()[0]
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # we reaped it ourselves; tell Popen so it does not try again
    return {"wall_s": wall, "exit_code": code, "maxrss_kib": usage.ru_maxrss, "loadavg_1m_after": load1,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime}


def tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return "\n".join(lines[-n:])


def abort(what: str, result: dict, log_path: Path) -> None:
    print(f"\n---- last {LOG_TAIL_LINES} lines of {log_path} ----", file=sys.stderr)
    print(tail(log_path), file=sys.stderr)
    print("---- end of log ----", file=sys.stderr)
    sys.exit(f"bench_pipeline: ABORT: {what} failed with exit code {result['exit_code']} after "
             f"{result['wall_s']:.1f} s (peak RSS {_mib(result['maxrss_kib']):.0f} MB); full log: {log_path}")


def machine_info() -> dict:
    mem_total_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
    except OSError:
        pass
    cgroup_mem = None
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        cgroup_mem = None if raw == "max" else int(raw)
    except (OSError, ValueError):
        pass
    versions = {}
    for dist in ("pandas", "numpy", "pyarrow", "great_expectations", "SQLAlchemy", "matplotlib"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git_rev = None
    try:
        git_rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "hostname": platform.node(), "platform": platform.platform(), "cpu_model": cpu_model,
        "nproc": affinity, "cpu_count": os.cpu_count(),
        "mem_total_gib": round(mem_total_kib / 1024**2, 1) if mem_total_kib else None,
        "cgroup_memory_max_gib": round(cgroup_mem / 1024**3, 1) if cgroup_mem else None,
        "python": platform.python_version(), "python_executable": sys.executable,
        "versions": versions, "git_rev": git_rev, "git_dirty": git_dirty(),
        "code_fingerprint_at_start": source_fingerprint(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def source_fingerprint() -> str:
    """A short hash of the pipeline's code and SQL, to tell whether the code changed mid-benchmark."""
    h = hashlib.sha256()
    root = CODE_ROOT
    files = sorted([*(root / "plugins" / "slowburn").rglob("*.py"), *(root / "include").rglob("*.sql"),
                    *(root / "include").rglob("*.yaml"), *(root / "include").rglob("*.yml")])
    for f in files:
        try:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
        except OSError:
            pass
    return h.hexdigest()[:12]


def snapshot_code(ref: str, workdir: Path) -> tuple[Path, str]:
    """`git archive REF plugins include` into the work folder: a frozen copy that concurrent edits can't touch."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True,
                         text=True, check=True).stdout.strip()
    dest = workdir / f"code-{sha[:12]}"
    if not (dest / "plugins" / "slowburn" / "pipeline.py").exists():
        tmp = workdir / f".code-{sha[:12]}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha, "plugins", "include"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest, sha


def git_dirty() -> list[str]:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "plugins", "include"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in out.splitlines() if line.strip()]


def run_id_for(logical_date: str) -> str:
    # slowburn.pipeline.RunContext.run_id: the logical date (UTC) as %Y-%m-%dT%H%M%S
    return datetime.fromisoformat(logical_date).strftime("%Y-%m-%dT%H%M%S")


def read_step_counts(home: Path, logical_date: str) -> dict:
    attempts = sorted((home / "runs" / run_id_for(logical_date)).glob("attempt-*/step_counts.json"),
                      key=lambda p: int(p.parent.name.split("-")[1]))
    path = attempts[-1] if attempts else home / "missing"  # the newest attempt (runs/<run>/attempt-<n>)
    if not path.exists():  # fall back to whatever single run folder exists
        found = sorted((home / "runs").glob("*/attempt-*/step_counts.json"))
        if len(found) != 1:
            return {}
        path = found[0]
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------- phases

def measure_baselines(workdir: Path, repeats: int, env: dict) -> dict:
    out = {}
    for label, code in BASELINES.items():
        runs = []
        for i in range(max(3, repeats)):
            log_path = workdir / "logs" / f"baseline-{len(out)}-{i}.log"
            res = run_measured([sys.executable, "-c", code], log_path, workdir, env)
            if res["exit_code"] != 0:
                abort(f"imports baseline {code!r}", res, log_path)
            runs.append(res)
        out[label] = {
            "code": code, "runs": runs,
            "median_wall_s": _median([r["wall_s"] for r in runs]),
            "median_peak_mb": _median([_mib(r["maxrss_kib"]) for r in runs]),
        }
        print(f"  {label:<58} wall {out[label]['median_wall_s']:.2f} s   "
              f"peak RSS {out[label]['median_peak_mb']:.0f} MB   (median of {len(runs)})", flush=True)
    return out


def ensure_sample(workdir: Path, n: int, seed: int, now: str, env: dict) -> dict:
    folder = workdir / f"sample-n{n}-seed{seed}-{now}"
    manifest_path = folder / "manifest.json"
    want_now = datetime.fromisoformat(now)
    want_now = want_now.replace(tzinfo=timezone.utc) if want_now.tzinfo is None else want_now
    if manifest_path.exists():
        try:
            m = json.loads(manifest_path.read_text(encoding="utf-8"))
            got_now = datetime.fromisoformat(m["now"])
            if m.get("n_leads") == n and m.get("seed") == seed and got_now == want_now \
                    and Path(m["files"]["sources"]).exists():
                print(f"  sample: reusing {folder} (manifest matches n_leads={n}, seed={seed}, now={now})",
                      flush=True)
                return {"folder": str(folder), "sources": m["files"]["sources"], "cached": True,
                        "counts": m.get("counts"), "wall_s": None, "peak_mb": None}
        except (ValueError, KeyError, TypeError):
            pass
        print(f"  sample: {manifest_path} does not match; regenerating", flush=True)
    if folder.exists():
        shutil.rmtree(folder)
    print(f"  sample: generating {n} leads (seed {seed}, now {now}) into {folder} ...", flush=True)
    log_path = workdir / "logs" / f"sample-n{n}.log"
    res = run_measured([sys.executable, "-m", "slowburn.cli", "sample", "--out", str(folder), "--leads", str(n),
                        "--seed", str(seed), "--now", now], log_path, workdir, env)
    if res["exit_code"] != 0:
        abort(f"sample generation (n={n})", res, log_path)
    m = json.loads(manifest_path.read_text(encoding="utf-8"))
    print(f"  sample: generated in {res['wall_s']:.1f} s, peak RSS {_mib(res['maxrss_kib']):.0f} MB", flush=True)
    return {"folder": str(folder), "sources": m["files"]["sources"], "cached": False, "counts": m.get("counts"),
            "wall_s": res["wall_s"], "peak_mb": _mib(res["maxrss_kib"])}


def ensure_next_night(workdir: Path, n: int, seed: int, now: str, sample: dict, changed: float, new: float,
                      env: dict) -> dict:
    """The sample's next night (`slowburn sample --next-night`) in its own folder, cached like the sample."""
    folder = workdir / f"sample-n{n}-seed{seed}-{now}-night2-changed{changed:g}-new{new:g}"
    manifest_path = folder / "manifest.json"
    want_now = datetime.fromisoformat(now)
    want_now = (want_now.replace(tzinfo=timezone.utc) if want_now.tzinfo is None else want_now) + timedelta(days=1)
    if manifest_path.exists() and sample["cached"]:
        try:
            m = json.loads(manifest_path.read_text(encoding="utf-8"))
            fr = m["last_night"]["fractions"]
            if (m.get("night") == 2 and m.get("n_leads") == n and m.get("seed") == seed
                    and datetime.fromisoformat(m["now"]) == want_now and fr["changed"] == changed
                    and fr["new"] == new and Path(m["files"]["sources"]).exists()):
                print(f"  next night: reusing {folder}", flush=True)
                return {"folder": str(folder), "sources": m["files"]["sources"], "cached": True,
                        "last_night": m["last_night"], "wall_s": None, "peak_mb": None}
        except (ValueError, KeyError, TypeError):
            pass
    if folder.exists():
        shutil.rmtree(folder)
    print(f"  next night: {changed:g} of the leads changed, {new:g} new, into {folder} ...", flush=True)
    log_path = workdir / "logs" / f"next-night-n{n}.log"
    res = run_measured([sys.executable, "-m", "slowburn.cli", "sample", "--next-night", sample["folder"],
                        "--out", str(folder), "--changed", str(changed), "--new", str(new)], log_path, workdir, env)
    if res["exit_code"] != 0:
        abort(f"next-night generation (n={n})", res, log_path)
    m = json.loads(manifest_path.read_text(encoding="utf-8"))
    last = m["last_night"]
    print(f"  next night: generated in {res['wall_s']:.1f} s, peak RSS {_mib(res['maxrss_kib']):.0f} MB: "
          f"changed {last['changed']}, new {last['new']}, {last['new_touches']} touches, "
          f"{last['new_outcomes']} outcomes", flush=True)
    return {"folder": str(folder), "sources": m["files"]["sources"], "cached": False, "last_night": last,
            "wall_s": res["wall_s"], "peak_mb": _mib(res["maxrss_kib"])}


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def run_night(workdir: Path, home: Path, logs: Path, what: str, sources: str, logical_date: str, env: dict) -> dict:
    """Every step of one logical date as its own subprocess, on `home` (and its SQLite warehouse) as it is."""
    fingerprint = source_fingerprint()
    if logs.exists():
        shutil.rmtree(logs)
    steps = {}
    for step in STEPS:
        log_path = logs / f"{step}.log"
        cmd = [sys.executable, "-m", "slowburn.cli", "step", step, "--sources", sources, "--home", str(home),
               "--logical-date", logical_date]
        res = run_measured(cmd, log_path, workdir, env)
        if res["exit_code"] != 0:
            abort(f"step {step!r} ({what})", res, log_path)
        counts = read_step_counts(home, logical_date).get(step, {})
        res["in_step_s"] = counts.get("seconds")
        res["peak_mb"] = _mib(res["maxrss_kib"])
        res["cpu_s"] = res["user_s"] + res["sys_s"]
        res["counts"] = {k: v for k, v in counts.items() if k != "seconds"}
        res["log"] = str(log_path)
        steps[step] = res
        print(f"    {step:<10} wall {res['wall_s']:8.2f} s   in-step {_fmt(res['in_step_s'], '8.2f')} s   "
              f"peak RSS {res['peak_mb']:8.0f} MB   (user {res['user_s']:.1f} s, sys {res['sys_s']:.1f} s, "
              f"load {res['loadavg_1m_after']:.1f})",
              flush=True)
    if source_fingerprint() != fingerprint:
        print("    WARNING: the pipeline's code changed while this night ran; its numbers mix two versions",
              flush=True)
    total_wall = sum(s["wall_s"] for s in steps.values())
    total_in = sum(s["in_step_s"] or 0.0 for s in steps.values())
    peak = max(s["peak_mb"] for s in steps.values())
    print(f"    {'TOTAL':<10} wall {total_wall:8.2f} s   in-step {total_in:8.2f} s   max peak RSS {peak:5.0f} MB",
          flush=True)
    return {"home": str(home), "logical_date": logical_date, "code_fingerprint": fingerprint, "steps": steps,
            "total_wall_s": total_wall, "total_in_step_s": total_in, "max_peak_mb": peak}


def run_pipeline_once(workdir: Path, n: int, rep: int, sources: str, logical_date: str, env: dict,
                      keep_home: bool) -> dict:
    home = _fresh(workdir / f"home-n{n}-r{rep}")
    run = run_night(workdir, home, workdir / "logs" / f"n{n}-r{rep}", f"n={n}, repeat {rep + 1}", sources,
                    logical_date, env)
    if not keep_home:
        shutil.rmtree(home, ignore_errors=True)
    return run


def run_two_nights(workdir: Path, n: int, rep: int, sources: tuple[str, str], logical_date: str, env: dict,
                   keep_home: bool) -> dict:
    """Night 1 on a fresh warehouse, then night 2 (the next-night sources, a day later) on the same one."""
    home = _fresh(workdir / f"home-n{n}-r{rep}-nights")
    dates = (logical_date, next_day(logical_date))
    out = {"home": str(home)}
    for night, (src, date) in enumerate(zip(sources, dates), start=1):
        print(f"   night {night}: logical date {date}" + (" (fresh warehouse)" if night == 1 else
                                                          " (the same warehouse)"), flush=True)
        run = run_night(workdir, home, workdir / "logs" / f"n{n}-r{rep}-night{night}",
                        f"n={n}, repeat {rep + 1}, night {night}", src, date, env)
        run["rows_written"] = rows_written(home, date)
        w = run["rows_written"]
        print(f"    rows written ({w['source']}): " + ", ".join(
            f"{t}={_written(c)}" for t, c in w["tables"].items() if _written(c)), flush=True)
        out[f"night{night}"] = run
    if not keep_home:
        shutil.rmtree(home, ignore_errors=True)
    return out


def next_day(logical_date: str) -> str:
    return (datetime.fromisoformat(logical_date) + timedelta(days=1)).strftime("%Y-%m-%d")


def rows_written(home: Path, logical_date: str) -> dict:
    """What the night's load wrote per warehouse table.

    The load step's own account (step_counts.json, load.rows_written: {table: {inserted, updated,
    deleted}}) when it gives one. Otherwise, counted right after the night: the rows carrying the
    run's run_id in every table that has that column, and every row of the tables the load replaces
    whole (warehouse.STATE_TABLES: their rows keep the run_id of the run that first saw them).
    """
    load = read_step_counts(home, logical_date).get("load", {})
    if isinstance(load.get("rows_written"), dict):
        return {"source": "the load step's rows_written", "tables": load["rows_written"]}
    run_id = run_id_for(logical_date)
    whole = replaced_whole_tables()
    con = sqlite3.connect(f"file:{home / 'warehouse.db'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        counts = {}
        for table in tables:
            if table in whole:
                counts[table] = {"rows": con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0],
                                 "replaced_whole": True}
            elif "run_id" in [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]:
                counts[table] = {"rows": con.execute(f'SELECT COUNT(*) FROM "{table}" WHERE run_id = ?',
                                                     (run_id,)).fetchone()[0]}
    finally:
        con.close()
    return {"source": "counted in the warehouse (rows with the night's run_id; every row of a table the load "
                      "replaces whole)", "tables": counts}


def replaced_whole_tables() -> tuple[str, ...]:
    """STATE_TABLES of the benchmarked code's warehouse.py, read rather than imported (the parent stays small)."""
    try:
        tree = ast.parse((CODE_ROOT / "plugins" / "slowburn" / "warehouse.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "STATE_TABLES" for t in node.targets):
            try:
                return tuple(ast.literal_eval(node.value))
            except ValueError:
                return ()
    return ()


def _written(c: dict) -> int:
    """Rows a night wrote to one table: inserted + updated (the load's account) or the run_id count."""
    return int(c["rows"]) if "rows" in c else int(c.get("inserted") or 0) + int(c.get("updated") or 0)


# ---------------------------------------------------------------------------------------- summary

def summarise_size(n: int, runs: list[dict]) -> dict:
    for r in runs:  # results written by older versions of this script lack some fields
        r.setdefault("code_fingerprint", None)
        for st in r["steps"].values():
            st.setdefault("cpu_s", st["user_s"] + st["sys_s"])
    per_step = {}
    for step in STEPS:
        walls = [r["steps"][step]["wall_s"] for r in runs]
        ins = [r["steps"][step]["in_step_s"] for r in runs]
        peaks = [r["steps"][step]["peak_mb"] for r in runs]
        cpus = [r["steps"][step]["cpu_s"] for r in runs]
        per_step[step] = {
            "median_cpu_s": _median(cpus),
            "median_wall_s": _median(walls), "min_wall_s": min(walls), "max_wall_s": max(walls),
            "median_in_step_s": _median(ins),
            "min_in_step_s": min((x for x in ins if x is not None), default=None),
            "max_in_step_s": max((x for x in ins if x is not None), default=None),
            "median_peak_mb": _median(peaks), "min_peak_mb": min(peaks), "max_peak_mb": max(peaks),
        }
    tw = [r["total_wall_s"] for r in runs]
    tc = [sum(st["cpu_s"] for st in r["steps"].values()) for r in runs]
    loads = [st["loadavg_1m_after"] for r in runs for st in r["steps"].values() if "loadavg_1m_after" in st]
    ti = [r["total_in_step_s"] for r in runs]
    pk = [r["max_peak_mb"] for r in runs]
    load = runs[-1]["steps"]["load"]["counts"]
    rows = {k: load.get(k) for k in ("landed_leads", "quarantined_leads", "linked_leads", "golden_leads",
                                     "sales_queue", "nurture_queue", "lead_flags", "landed_touches",
                                     "quarantined_touches", "invariant_ok")}
    consistent = all({k: r["steps"]["load"]["counts"].get(k) for k in rows} == rows for r in runs)
    return {
        "n_leads": n, "repeats": len(runs), "per_step": per_step,
        "total": {"median_cpu_s": _median(tc), "median_wall_s": _median(tw), "min_wall_s": min(tw), "max_wall_s": max(tw),
                  "median_in_step_s": _median(ti), "min_in_step_s": min(ti), "max_in_step_s": max(ti),
                  "median_max_peak_mb": _median(pk), "max_peak_mb": max(pk), "min_max_peak_mb": min(pk),
                  "peak_step": max(STEPS, key=lambda s: per_step[s]["max_peak_mb"])},
        "row_counts": rows, "row_counts_consistent_across_repeats": consistent,
        "code_fingerprints": sorted({r["code_fingerprint"] for r in runs if r["code_fingerprint"]}),
        "loadavg_1m": {"median": _median(loads), "max": max(loads)} if loads else None,
    }


def check_targets(summary: dict) -> list[dict]:
    n = summary["n_leads"]
    if n not in TARGETS:
        return []
    return time_memory_targets(f"{n:,} leads", summary["total"], *TARGETS[n])


def time_memory_targets(label: str, t: dict, max_s: float, max_bytes: float | None) -> list[dict]:
    out = [{"target": f"{label} end to end (sum of step wall times, median) <= {max_s:.0f} s",
            "measured": f"{t['median_wall_s']:.1f} s", "pass": t["median_wall_s"] <= max_s},
           {"target": f"{label} end to end (sum of in-step times, median) <= {max_s:.0f} s",
            "measured": f"{t['median_in_step_s']:.1f} s", "pass": t["median_in_step_s"] <= max_s},
           {"target": f"{label} end to end (sum of step CPU user+sys, median; a proxy robust to other load) "
                      f"<= {max_s:.0f} s",
            "measured": f"{t['median_cpu_s']:.1f} s", "pass": t["median_cpu_s"] <= max_s, "informational": True}]
    if max_bytes:
        peak_bytes = t["max_peak_mb"] * 1024**2
        out.append({"target": f"{label} peak RSS of any step (max over repeats) <= {max_bytes / 1e9:.0f} GB "
                              f"({max_bytes / 1024**2:.0f} MiB)",
                    "measured": f"{t['max_peak_mb']:.0f} MiB ({peak_bytes / 1e9:.2f} GB) in {t['peak_step']}",
                    "pass": peak_bytes <= max_bytes})
    return out


_RATIO_KEYS = ("median_wall_s", "median_in_step_s", "median_cpu_s", "median_peak_mb")


def _ratio(a, b):
    return None if not a or b is None else b / a


def summarise_nights(n: int, runs: list[dict]) -> dict:
    """Per night the usual summary (medians over repeats), night 2 / night 1 per step, and rows written."""
    first = summarise_size(n, [r["night1"] for r in runs])
    second = summarise_size(n, [r["night2"] for r in runs])
    per_step = {st: {k: _ratio(first["per_step"][st][k], second["per_step"][st][k]) for k in _RATIO_KEYS}
                for st in STEPS}
    total = {k: _ratio(first["total"][k], second["total"][k])
             for k in ("median_wall_s", "median_in_step_s", "median_cpu_s", "median_max_peak_mb")}
    return {"n_leads": n, "repeats": len(runs), "night1": first, "night2": second,
            "ratio": {"per_step": per_step, "total": total},
            "rows_written": {f"night{i}": runs[-1][f"night{i}"].get("rows_written") for i in (1, 2)}}


def check_night_targets(ns: dict) -> list[dict]:
    n = ns["n_leads"]
    ratio = ns["ratio"]["total"]
    goal = NIGHT_TARGETS.get(n)
    if goal is None:
        out = check_targets(ns["night1"])
        for t in out:
            t["target"] = "night 1: " + t["target"]
        if ratio["median_wall_s"] is not None:
            out.append({"target": f"{n:,} leads night 2 / night 1 (sum of step wall times, median) <= {NIGHT_RATIO} "
                                  f"(the target is set at 1,000,000 leads)",
                        "measured": f"{ratio['median_wall_s']:.3f}", "pass": ratio["median_wall_s"] <= NIGHT_RATIO,
                        "informational": True})
        return out
    out = time_memory_targets(f"{n:,} leads, night 1 (first night)", ns["night1"]["total"], *goal["night1"])
    out += time_memory_targets(f"{n:,} leads, night 2 (the next night's changes)", ns["night2"]["total"],
                               *goal["night2"])
    for key, what in (("median_wall_s", "sum of step wall times"), ("median_in_step_s", "sum of in-step times")):
        out.append({"target": f"{n:,} leads night 2 / night 1 ({what}, median) <= {goal['ratio']}",
                    "measured": _fmt(ratio[key], ".3f"), "pass": ratio[key] is not None and ratio[key] <= goal["ratio"]})
    return out


def ratio_lines(summaries: list[dict]) -> list[str]:
    """Largest size / smallest size, per step: within one run, so machine noise mostly cancels."""
    if len(summaries) < 2:
        return []
    small, big = summaries[0], summaries[-1]
    scale = big["n_leads"] / small["n_leads"]

    def r(key, step=None):
        a = (small["per_step"][step] if step else small["total"]).get(key)
        b = (big["per_step"][step] if step else big["total"]).get(key)
        return None if not a or b is None else b / a

    lines = [f"{big['n_leads']:,} / {small['n_leads']:,} ratio (x{scale:g} rows; linear scaling = {scale:g}):", "",
             "ratio in-step: " + ", ".join(f"{st} {_fmt(r('median_in_step_s', st), '.1f')}x" for st in STEPS)
             + f"; total {_fmt(r('median_in_step_s'), '.1f')}x", "",
             "| step | in-step ratio | wall ratio | CPU ratio | peak RSS ratio |", "|---|---:|---:|---:|---:|"]
    for st in STEPS:
        lines.append(f"| {st} | {_fmt(r('median_in_step_s', st), '.1f')} | {_fmt(r('median_wall_s', st), '.1f')} | "
                     f"{_fmt(r('median_cpu_s', st), '.1f')} | {_fmt(r('median_peak_mb', st), '.1f')} |")
    lines.append(f"| **total** | {_fmt(r('median_in_step_s'), '.1f')} | {_fmt(r('median_wall_s'), '.1f')} | "
                 f"{_fmt(r('median_cpu_s'), '.1f')} | {_fmt(r('median_max_peak_mb'), '.1f')} |")
    return lines


def size_table(s: dict, baseline_s: float | None) -> list[str]:
    lines = [f"| step | wall s (median) | in-step s (median) | wall − in-step s | wall s [min–max] | "
             f"CPU s (median) | peak RSS MB (median) | peak RSS MB [min–max] |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for step in STEPS:
        p = s["per_step"][step]
        overhead = None if p["median_in_step_s"] is None else p["median_wall_s"] - p["median_in_step_s"]
        lines.append(f"| {step} | {p['median_wall_s']:.2f} | {_fmt(p['median_in_step_s'])} | {_fmt(overhead)} | "
                     f"{p['min_wall_s']:.2f}–{p['max_wall_s']:.2f} | {p['median_cpu_s']:.2f} | {p['median_peak_mb']:.0f} | "
                     f"{p['min_peak_mb']:.0f}–{p['max_peak_mb']:.0f} |")
    t = s["total"]
    lines.append(f"| **end to end** | **{t['median_wall_s']:.2f}** | **{t['median_in_step_s']:.2f}** | "
                 f"{t['median_wall_s'] - t['median_in_step_s']:.2f} | {t['min_wall_s']:.2f}–{t['max_wall_s']:.2f} | "
                 f"{t['median_cpu_s']:.2f} | "
                 f"**{t['median_max_peak_mb']:.0f}** (max, {t['peak_step']}) | "
                 f"{t['min_max_peak_mb']:.0f}–{t['max_peak_mb']:.0f} |")
    if baseline_s is not None:
        lines.append("")
        lines.append(f"Imports baseline ≈ {baseline_s:.2f} s per step subprocess "
                     f"(≈ {baseline_s * len(STEPS):.1f} s over {len(STEPS)} steps). Note: in-step seconds include "
                     "imports a step does lazily inside its function (great_expectations in validate, "
                     "matplotlib in summarize), so wall − in-step understates the import cost for those steps.")
    return lines


def render_markdown(results: dict) -> str:
    m = results["machine"]
    v = m["versions"]
    nights = results["args"].get("nights", 1)
    out = [f"# slowburn pipeline benchmark: sizes {', '.join(f'{n:,}' for n in results['args']['sizes'])}"
           + (f", {nights} nights on one warehouse" if nights > 1 else ""), "",
           f"- machine: {m['hostname']}, {m['cpu_model']}, nproc {m['nproc']}, RAM {m['mem_total_gib']} GiB"
           + (f", cgroup limit {m['cgroup_memory_max_gib']} GiB" if m.get("cgroup_memory_max_gib") else ""),
           f"- python {m['python']}, pandas {v.get('pandas')}, numpy {v.get('numpy')}, pyarrow {v.get('pyarrow')}, "
           f"great_expectations {v.get('great_expectations')}, SQLAlchemy {v.get('SQLAlchemy')}",
           f"- git {m['git_rev']}"
           + (f" + uncommitted changes in {', '.join(m['git_dirty'])}"
              if m.get("git_dirty") and not results.get("code", {}).get("ref") else "")
           + f" (code fingerprint {m.get('code_fingerprint_at_start')}), started {m['started_at']}, repeats {results['args']['repeats']}, "
           f"seed {results['args']['seed']}, now {results['args']['now']}, logical date {results['args']['logical_date']}",
           "- wall = perf_counter around the step subprocess (interpreter + imports + step); in-step = the step's "
           "own `seconds` from step_counts.json; CPU = child user+sys (robust to other load on the machine); "
           "peak RSS = child ru_maxrss from os.wait4 (MB = MiB)",
           f"- code: {results.get('code', {}).get('label', 'live working tree')}", "",
           "## Imports baseline", "", "| subprocess | wall s (median) | peak RSS MB (median) |", "|---|---:|---:|"]
    for label, b in results["baselines"].items():
        out.append(f"| `python -c \"{b['code']}\"` | {b['median_wall_s']:.2f} | {b['median_peak_mb']:.0f} |")
    base = _baseline_seconds(results)
    for s in results["sizes"]:
        gen = results["samples"][str(s["n_leads"])]
        out += ["", f"## {s['n_leads']:,} leads ({s['repeats']} repeat(s))", "", _sample_line(gen)]
        out += _night_lines(s, results, base)
    for ns in results.get("nights") or []:
        out += nights_section(ns, results, base)
    if results["targets"]:
        out += ["", "## Targets", "", "| target | measured | result |", "|---|---|---|"]
        for t in results["targets"]:
            verdict = "PASS" if t["pass"] else "**FAIL**"
            out.append(f"| {t['target']} | {t['measured']} | {verdict}{' (informational)' if t.get('informational') else ''} |")
    ratios = ratio_lines(results["sizes"])
    if ratios:
        out += ["", "## Scaling", ""] + ratios
    return "\n".join(out) + "\n"


def _sample_line(gen: dict) -> str:
    if gen["cached"]:
        return f"Sample: reused cached `{gen['folder']}`."
    return f"Sample generation (not part of pipeline time): {gen['wall_s']:.1f} s, peak RSS {gen['peak_mb']:.0f} MB."


def _night_lines(s: dict, results: dict, base: float | None) -> list[str]:
    """Load, the per-step table and the row counts of one summarised night."""
    out = []
    if s.get("loadavg_1m"):
        out.append(f"Machine load while it ran (1-min loadavg after each step, {results['machine']['nproc']} CPUs): "
                   f"median {s['loadavg_1m']['median']:.1f}, max {s['loadavg_1m']['max']:.1f}"
                   + ("  **(other work competed for the CPUs: trust CPU s more than wall s)**"
                      if s["loadavg_1m"]["median"] > (results["machine"]["nproc"] or 1) + 0.5 else ""))
    out.append("")
    out += size_table(s, base)
    rc = s["row_counts"]
    out += ["", "Row counts (load step): " + ", ".join(f"{k}={v}" for k, v in rc.items())
            + ("" if s["row_counts_consistent_across_repeats"] else "  **(differ across repeats!)**")]
    if len(s["code_fingerprints"]) > 1:
        out += ["", f"**Warning:** the code changed between repeats (fingerprints {s['code_fingerprints']})."]
    return out


def nights_section(ns: dict, results: dict, base: float | None) -> list[str]:
    """Two nights of one size: each night's steps, night 2 / night 1 per step, and rows written per table."""
    n = ns["n_leads"]
    gen, nxt = results["samples"][str(n)], results["next_nights"][str(n)]
    last = nxt.get("last_night") or {}
    d1 = results["args"]["logical_date"]
    out = ["", f"## {n:,} leads, two nights ({ns['repeats']} repeat(s))", "", _sample_line(gen), ""]
    made = ("reused cached" if nxt["cached"] else
            f"generated in {nxt['wall_s']:.1f} s, peak RSS {nxt['peak_mb']:.0f} MB, not part of pipeline time")
    out.append(f"Next night (`slowburn sample --next-night`, {made}): changed leads "
               + ", ".join(f"{k} {v:,}" for k, v in (last.get("changed") or {}).items())
               + " (" + ", ".join(f"{k} {v:,}" for k, v in (last.get("changed_by_kind") or {}).items()) + "); new leads "
               + ", ".join(f"{k} {v:,}" for k, v in (last.get("new") or {}).items())
               + f" ({last.get('new_duplicates', 0):,} of them people already known); "
               f"{last.get('new_touches', 0):,} new touches; {last.get('new_outcomes', 0):,} new outcomes.")
    out += ["", f"### Night 1: logical date {d1}, a fresh warehouse"] + _night_lines(ns["night1"], results, base)
    out += ["", f"### Night 2: logical date {next_day(d1)}, the same warehouse"]
    out += _night_lines(ns["night2"], results, base)
    s1, s2, ratio = ns["night1"], ns["night2"], ns["ratio"]
    out += ["", "### Night 2 / night 1", "",
            "| step | wall s night 1 | wall s night 2 | wall ratio | in-step s night 1 | in-step s night 2 | "
            "in-step ratio | CPU ratio | peak RSS MB night 1 | peak RSS MB night 2 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for st in STEPS:
        a, b, r = s1["per_step"][st], s2["per_step"][st], ratio["per_step"][st]
        out.append(f"| {st} | {a['median_wall_s']:.2f} | {b['median_wall_s']:.2f} | {_fmt(r['median_wall_s'], '.3f')} | "
                   f"{_fmt(a['median_in_step_s'])} | {_fmt(b['median_in_step_s'])} | {_fmt(r['median_in_step_s'], '.3f')} | "
                   f"{_fmt(r['median_cpu_s'], '.3f')} | {a['median_peak_mb']:.0f} | {b['median_peak_mb']:.0f} |")
    a, b, r = s1["total"], s2["total"], ratio["total"]
    out.append(f"| **end to end** | {a['median_wall_s']:.2f} | {b['median_wall_s']:.2f} | "
               f"**{_fmt(r['median_wall_s'], '.3f')}** | {a['median_in_step_s']:.2f} | {b['median_in_step_s']:.2f} | "
               f"**{_fmt(r['median_in_step_s'], '.3f')}** | {_fmt(r['median_cpu_s'], '.3f')} | "
               f"{a['median_max_peak_mb']:.0f} | {b['median_max_peak_mb']:.0f} |")
    out += [""] + rows_written_table(ns["rows_written"])
    return out


def rows_written_table(written: dict) -> list[str]:
    w1, w2 = written.get("night1") or {"tables": {}}, written.get("night2") or {"tables": {}}
    tables = sorted(set(w1["tables"]) | set(w2["tables"]))
    out = ["### Rows written per table (last repeat)", "",
           f"Night 1: {w1.get('source', '-')}; night 2: {w2.get('source', '-')}. Written = inserted + updated; "
           "*replaced* = the load deleted and re-inserted the whole table.", "",
           "| table | night 1 written | night 2 written | night 2 inserted | night 2 updated | night 2 deleted |",
           "|---|---:|---:|---:|---:|---:|"]
    total = [0, 0]
    for t in tables:
        c1, c2 = w1["tables"].get(t), w2["tables"].get(t)
        n1, n2 = (_written(c) if c else None for c in (c1, c2))
        if not n1 and not n2:
            continue
        total = [total[0] + (n1 or 0), total[1] + (n2 or 0)]
        detail = [(c2 or {}).get(k) for k in ("inserted", "updated", "deleted")]
        shown = [_fmt(x, ",") + (" *replaced*" if (c or {}).get("replaced_whole") else "")
                 for x, c in ((n1, c1), (n2, c2))]
        out.append(f"| {t} | {shown[0]} | {shown[1]} | " + " | ".join(_fmt(x, ",") for x in detail) + " |")
    out.append(f"| **all tables** | **{total[0]:,}** | **{total[1]:,}** | | | |")
    return out


def _baseline_seconds(results: dict) -> float | None:
    b = results.get("baselines") or {}
    first = next(iter(b.values()), None)
    return first["median_wall_s"] if first else None


def write_results(out_dir: Path, sizes: list[int], results: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    nights = results["args"].get("nights", 1)
    stem = "results-" + "-".join(str(n) for n in sizes) + (f"-{nights}nights" if nights > 1 else "")
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    if results["sizes"] or results.get("nights"):
        mpath.write_text(render_markdown(results), encoding="utf-8")
    return jpath, mpath


# ---------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="lead counts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--now", default=DEFAULT_NOW, help="the sample's `now` (fixed, so the sample cache stays valid)")
    p.add_argument("--logical-date", default=LOGICAL_DATE)
    p.add_argument("--workdir", default=os.environ.get("SLOWBURN_BENCH_DIR", "/tmp/slowburn-bench"),
                   help="samples, run homes and logs (default: $SLOWBURN_BENCH_DIR or /tmp/slowburn-bench)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="where results-*.json/.md go")
    p.add_argument("--code", default=None, metavar="REF",
                   help="benchmark a frozen `git archive REF` snapshot of plugins/ and include/ instead of the live "
                        "working tree (use when others edit the code while the benchmark runs), e.g. --code HEAD")
    p.add_argument("--keep-homes", action="store_true", help="keep each repeat's home folder (disk heavy at 1M)")
    p.add_argument("--nights", type=int, choices=(1, 2), default=1,
                   help="2: after the first night, generate the next night's sources (`slowburn sample "
                        "--next-night`) and run the next logical date on the same warehouse; reports both nights, "
                        "night 2 / night 1 and the rows written per table")
    p.add_argument("--changed", type=float, default=0.01, help="with --nights 2: share of leads that change")
    p.add_argument("--new", type=float, default=0.003, help="with --nights 2: new leads, as a share of the leads")
    p.add_argument("--rerender", metavar="RESULTS.json",
                   help="don't run anything: recompute the tables and targets from an earlier results JSON")
    args = p.parse_args(argv)
    if args.rerender:
        return rerender(Path(args.rerender), Path(args.out).resolve() if "--out" in (argv or sys.argv) else None)
    if args.repeats < 1 or any(n < 1 for n in args.sizes):
        p.error("--repeats and --sizes must be positive")
    sizes = sorted(dict.fromkeys(args.sizes))

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir = Path(args.out).resolve()
    global CODE_ROOT
    if args.code:
        CODE_ROOT, sha = snapshot_code(args.code, workdir)
        code = {"ref": args.code, "commit": sha, "root": str(CODE_ROOT),
                "label": f"git archive snapshot of {args.code} = {sha[:12]} (children run with PYTHONPATH={CODE_ROOT / 'plugins'})"}
    else:
        code = {"ref": None, "commit": None, "root": str(REPO), "label": f"live working tree {REPO}"}
    env = _child_env()
    if args.code:
        where = subprocess.run([sys.executable, "-c", "import slowburn.pipeline as p; print(p.__file__)"], env=env,
                               capture_output=True, text=True).stdout.strip()
        if not where.startswith(str(CODE_ROOT)):
            sys.exit(f"bench_pipeline: ABORT: children import slowburn from {where!r}, not the snapshot {CODE_ROOT}")

    machine = machine_info()
    v = machine["versions"]
    print(f"slowburn pipeline benchmark  sizes={sizes} repeats={args.repeats} seed={args.seed} now={args.now} "
          f"logical_date={args.logical_date} nights={args.nights}"
          + (f" (changed {args.changed:g}, new {args.new:g})" if args.nights > 1 else ""))
    print(f"machine: {machine['hostname']}  {machine['cpu_model']}  nproc={machine['nproc']}  "
          f"RAM={machine['mem_total_gib']} GiB"
          + (f"  cgroup limit={machine['cgroup_memory_max_gib']} GiB" if machine["cgroup_memory_max_gib"] else ""))
    print(f"python {machine['python']} ({sys.executable})  pandas {v['pandas']}  numpy {v['numpy']}  "
          f"pyarrow {v['pyarrow']}  great_expectations {v['great_expectations']}  git {machine['git_rev']}")
    if machine["git_dirty"] and not args.code:
        print(f"uncommitted changes in: {', '.join(machine['git_dirty'])}")
    print(f"code: {code['label']}  fingerprint {machine['code_fingerprint_at_start']}")
    print(f"workdir: {workdir}   results: {out_dir}", flush=True)

    results = {"args": {"sizes": sizes, "repeats": args.repeats, "seed": args.seed, "now": args.now,
                        "logical_date": args.logical_date, "workdir": str(workdir), "nights": args.nights,
                        "changed": args.changed, "new": args.new},
               "machine": machine, "code": code, "baselines": {}, "samples": {}, "runs": {}, "sizes": [], "targets": [],
               "next_nights": {}, "nights": [], "complete": False}

    print("\n== imports baseline (subtract from each step's wall time)", flush=True)
    results["baselines"] = measure_baselines(workdir, args.repeats, env)

    for n in sizes:
        print(f"\n== {n:,} leads", flush=True)
        sample = ensure_sample(workdir, n, args.seed, args.now, env)
        results["samples"][str(n)] = sample
        if args.nights == 2:
            nxt = ensure_next_night(workdir, n, args.seed, args.now, sample, args.changed, args.new, env)
            results["next_nights"][str(n)] = nxt
            runs = []
            for rep in range(args.repeats):
                print(f"  repeat {rep + 1}/{args.repeats} (fresh home, two nights on one SQLite warehouse)", flush=True)
                runs.append(run_two_nights(workdir, n, rep, (sample["sources"], nxt["sources"]), args.logical_date,
                                           env, args.keep_homes))
                results["runs"][str(n)] = runs
                write_results(out_dir, sizes, results)
            ns = summarise_nights(n, runs)
            results["nights"].append(ns)
            results["targets"] += check_night_targets(ns)
            write_results(out_dir, sizes, results)
            continue
        runs = []
        for rep in range(args.repeats):
            print(f"  repeat {rep + 1}/{args.repeats} (fresh home, fresh SQLite warehouse)", flush=True)
            runs.append(run_pipeline_once(workdir, n, rep, sample["sources"], args.logical_date, env,
                                          args.keep_homes))
            results["runs"][str(n)] = runs
            write_results(out_dir, sizes, results)  # partial results survive an abort later on
        summary = summarise_size(n, runs)
        results["sizes"].append(summary)
        results["targets"] += check_targets(summary)
        write_results(out_dir, sizes, results)

    results["complete"] = True
    results["parent_maxrss_mb"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    jpath, mpath = write_results(out_dir, sizes, results)
    print_report(results, jpath, mpath)
    return 0


def rerender(path: Path, out_dir: Path | None) -> int:
    """Recompute the summaries, targets and markdown from a results JSON's raw runs (no re-run)."""
    results = json.loads(path.read_text(encoding="utf-8"))
    sizes = results["args"]["sizes"]
    results["sizes"], results["targets"], results["nights"] = [], [], []
    for n in sizes:
        runs = results["runs"].get(str(n)) or []
        if not runs:
            continue
        if results["args"].get("nights", 1) == 2:
            ns = summarise_nights(n, runs)
            results["nights"].append(ns)
            results["targets"] += check_night_targets(ns)
            continue
        summary = summarise_size(n, runs)
        results["sizes"].append(summary)
        results["targets"] += check_targets(summary)
    jpath, mpath = write_results(out_dir or path.parent, sizes, results)
    print_report(results, jpath, mpath)
    return 0


def print_report(results: dict, jpath: Path, mpath: Path) -> None:
    print("\n" + "=" * 100)
    print(render_markdown(results))
    if results["targets"]:
        print("targets:")
        for t in results["targets"]:
            print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['measured']}"
                  + ("  (informational)" if t.get("informational") else ""))
    if results.get("parent_maxrss_mb") is not None:
        print(f"\nbench parent peak RSS: {results['parent_maxrss_mb']:.0f} MB "
              "(children's ru_maxrss can't be below it)")
    print(f"results: {jpath}\n         {mpath}")


if __name__ == "__main__":
    sys.exit(main())
