"""The fault matrix: bad inputs, crashes (SIGKILL) in every step, re-runs and concurrent runs.

Each case runs the real pipeline on the hand-written tiny sources (tests/conftest.py) against a real
warehouse (SQLite, and PostgreSQL at 127.0.0.1:5432 in a schema of its own), then audits the warehouse:

  lost        landed leads neither linked nor quarantined, input records that never landed,
              golden leads without a score
  duplicated  leads both linked and quarantined, a source lead linked twice, a golden lead scored
              twice, queued twice or in both queues, landed rows beyond the input's records

A case survives when its outcome is the right one (the run commits with the same counts as a clean
run, or it stops with a named error and the warehouse is unchanged) and its audit finds nothing.
Crashes are real: the step runs in a forked child that SIGKILLs itself at the crash point (an output
about to be renamed into place, half a Parquet file written, or inside the load transaction).

    python bench/faults.py                  # every case on SQLite and PostgreSQL
    python bench/faults.py --backends sqlite --cases nul_byte unterminated_quote
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "plugins", ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("SLOWBURN_INCLUDE_DIR", str(ROOT / "include"))

import pandas as pd  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from conftest import LEADS_CSV, NOW, write_tiny_sources  # noqa: E402

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
STEPS = ("extract", "normalise", "validate", "dedupe", "score", "route", "flag", "load", "summarize")
SECRET = "S3cret-tok-4f9a1c"
TINY_RECORDS = LEADS_CSV.count("\n") - 1


@dataclass
class Outcome:
    survived: bool
    lost: int = 0
    duplicated: int = 0
    note: str = ""


@dataclass
class Case:
    name: str
    kind: str  # bad_input | crash | rerun | concurrency | cli
    run: Callable[["Env"], Outcome]
    doc: str = ""


@dataclass
class Env:
    backend: str
    work: Path
    url: str
    reference: dict = field(default_factory=dict)

    def sources(self, folder: str = "src") -> Path:
        return write_tiny_sources(self.work / folder)

    def ctx(self, sources: Path, days: int = 0, **kw):
        from slowburn.pipeline import RunContext
        return RunContext(logical_date=NOW + pd.Timedelta(days=days), sources_path=sources, home=self.work / "home",
                          warehouse_url=self.url, **kw)

    def warehouse(self):
        from slowburn.warehouse import Warehouse
        return Warehouse(self.url)


# ------------------------------------------------------------------------------------------- backends
@contextlib.contextmanager
def backend(name: str, work: Path):
    if name == "sqlite":
        yield f"sqlite:///{work / 'warehouse.db'}"
        return
    schema = f"sbf_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


# ---------------------------------------------------------------------------------------------- audit
def audit(wh, expected_records: int | None = None) -> tuple[int, int, str]:
    """(lost, duplicated, problems) of the newest loaded run, read from the warehouse alone."""
    wh.ensure_schema()
    ledger = wh.read("SELECT * FROM run_ledger ORDER BY run_id")
    if ledger.empty:
        return (expected_records or 0), 0, "nothing loaded"
    row = ledger.iloc[-1]
    run = row["run_id"]
    q = lambda sql: wh.read(sql, run_id=run)  # noqa: E731
    landed = q("SELECT row_key FROM landed_leads WHERE run_id = :run_id")["row_key"]
    linked = q("SELECT row_key FROM lead_links WHERE run_id = :run_id")["row_key"]
    quarantined = set(q("SELECT row_key FROM quarantine WHERE run_id = :run_id AND entity = 'leads'")["row_key"])
    golden = wh.read("SELECT golden_id FROM golden_leads")["golden_id"]
    scored = wh.read("SELECT golden_id FROM lead_scores")["golden_id"]
    sales = wh.read("SELECT golden_id FROM sales_queue")["golden_id"]
    nurture = wh.read("SELECT golden_id FROM nurture_queue")["golden_id"]
    identity = wh.read("SELECT source_system, source_id, COUNT(*) AS n FROM lead_links "
                       "GROUP BY source_system, source_id HAVING COUNT(*) > 1")
    lost = len(set(landed) - set(linked) - quarantined) + len(set(golden) - set(scored))
    duplicated = (len(set(linked) & quarantined) + (len(linked) - linked.nunique()) + (len(landed) - landed.nunique())
                  + int((identity["n"] - 1).sum()) + (len(scored) - scored.nunique())
                  + len(set(sales) & set(nurture)) + (len(sales) - sales.nunique())
                  + (len(nurture) - nurture.nunique()))
    if expected_records is not None:
        lost += max(0, expected_records - landed.nunique())
        duplicated += max(0, landed.nunique() - expected_records)
    problems = []
    if int(row["landed_leads"]) != landed.nunique():
        problems.append(f"ledger says {row['landed_leads']} landed, the table holds {landed.nunique()}")
    if not bool(row["invariant_ok"]):
        problems.append("ledger not balanced")
    return lost, duplicated, "; ".join(problems)


def counts(wh) -> dict:
    row = wh.read("SELECT * FROM run_ledger ORDER BY run_id DESC").iloc[0]
    return {k: int(row[k]) for k in ("landed_leads", "linked_leads", "quarantined_leads", "golden_leads",
                                     "landed_touches", "quarantined_touches", "sales_queue", "nurture_queue",
                                     "lead_flags")}


def state(wh) -> dict:
    """Every warehouse table's rows (sorted), to prove that a refused run changed nothing."""
    wh.ensure_schema()
    out = {}
    for table in ("run_ledger", "current_leads", "lead_links", "golden_leads", "sales_queue", "nurture_queue",
                  "lead_scores", "quarantine", "landed_leads", "queue_history"):
        frame = wh.read(f"SELECT * FROM {table}").astype("string")
        out[table] = sorted(map(tuple, frame.fillna("").to_numpy().tolist()))
    return out


def committed(env: Env, expected_records: int | None = TINY_RECORDS, same_as_reference: bool = True,
              note: str = "") -> Outcome:
    wh = env.warehouse()
    lost, dup, problems = audit(wh, expected_records)
    if same_as_reference and env.reference and not problems:
        got = counts(wh)
        if got != env.reference:
            problems = f"counts differ from a clean run: {got} != {env.reference}"
    return Outcome(not problems and lost == 0 and dup == 0, lost, dup, problems or note)


def refused(env: Env, exc: BaseException | None, expected: tuple, before: dict | None, note: str = "") -> Outcome:
    """A named error of the expected kind, and a warehouse exactly as it was."""
    if exc is None:
        return Outcome(False, note="expected a refusal, the run went through")
    if not isinstance(exc, expected):
        return Outcome(False, note=f"wrong error {type(exc).__name__}: {exc}")
    if before is not None and state(env.warehouse()) != before:
        return Outcome(False, note=f"{type(exc).__name__} but the warehouse changed")
    lost, dup, _ = audit(env.warehouse(), None) if before else (0, 0, "")
    return Outcome(lost == 0 and dup == 0, lost, dup, note or f"{type(exc).__name__}: {str(exc)[:90]}")


def run_all_catching(ctx) -> BaseException | None:
    from slowburn.pipeline import run_all
    try:
        run_all(ctx)
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


# ------------------------------------------------------------------------------------ forked children
def in_child(target: Callable[[], None], timeout: float = 300) -> tuple[int | None, str]:
    """Run `target` in a forked child; (exit code, or -9 when SIGKILLed; the child's error text)."""
    mp = multiprocessing.get_context("fork")
    reader, writer = mp.Pipe(duplex=False)

    def main():
        try:
            target()
            writer.send("")
        except BaseException as exc:  # noqa: BLE001
            writer.send(f"{type(exc).__name__}: {exc}")
            os._exit(3)
        os._exit(0)

    proc = mp.Process(target=main)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
    message = reader.recv() if reader.poll() else ""
    return proc.exitcode, message


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_rename(nth: int = 1) -> None:
    """SIGKILL this process when an output is about to be renamed into place (the nth time)."""
    real, seen = os.replace, [0]

    def replace(src, dst, *a, **kw):
        seen[0] += 1
        if seen[0] >= nth:
            die()
        return real(src, dst, *a, **kw)
    os.replace = replace


def kill_mid_parquet() -> None:
    """SIGKILL after half of a Parquet file is on disk (a torn write)."""
    import pyarrow.parquet as pq
    real = pq.write_table

    def write_table(table, where, *a, **kw):
        real(table, where, *a, **kw)
        size = Path(where).stat().st_size
        with open(where, "r+b") as fh:
            fh.truncate(size // 2)
        die()
    pq.write_table = write_table


def kill_in_load(nth_table: int = 5) -> None:
    """SIGKILL inside the load transaction, after `nth_table` tables were inserted."""
    from slowburn.warehouse import Warehouse
    real, seen = Warehouse._insert, [0]

    def insert(self, conn, table, frame, *a, **kw):
        seen[0] += 1
        if seen[0] > nth_table:
            die()
        return real(self, conn, table, frame, *a, **kw)
    Warehouse._insert = insert


def kill_mid_text() -> None:
    """SIGKILL after half of a text file (the run summary) is written."""
    real = Path.write_text

    def write_text(self, data, *a, **kw):
        real(self, data[: len(data) // 2], *a, **kw)
        die()
    Path.write_text = write_text


# ------------------------------------------------------------------------------------------ bad input
def _bad_leads(lines_after_header: list[str], expected: int | None = None, mutate_bytes=None) -> Callable:
    def case(env: Env) -> Outcome:
        sources = env.sources()
        header = LEADS_CSV.splitlines()[0]
        body = "\n".join([header, *lines_after_header]) + "\n"
        data = body.encode("utf-8")
        if mutate_bytes:
            data = mutate_bytes(data)
        (sources.parent / "leads.csv").write_bytes(data)
        exc = run_all_catching(env.ctx(sources))
        if exc is not None:
            return Outcome(False, note=f"{type(exc).__name__}: {str(exc)[:120]}")
        return committed(env, expected if expected is not None else len(lines_after_header),
                         same_as_reference=False)
    return case


GOOD = LEADS_CSV.splitlines()[1:]


def _unterminated_quote(env: Env) -> Outcome:
    lines = GOOD[:2] + ['L20,"Broken,Quote,broken@quote.com,,Quotes,,US,O1,Open,Web,2026-11-10,2026-11-22,0'] + GOOD[2:]
    return _bad_leads(lines)(env)


def _nul_byte(env: Env) -> Outcome:
    lines = list(GOOD)
    lines[2] = lines[2].replace("Globex", "Glo\x00bex")
    lines[8] = lines[8].replace("CEO", "C\x00EO")
    outcome = _bad_leads(lines)(env)
    if outcome.survived:
        value = env.warehouse().read("SELECT company FROM current_leads WHERE source_id = 'L3'")["company"]
        if list(value) != ["Globex"]:
            return Outcome(False, note=f"NUL not removed: {list(value)}")
        outcome.note = "NUL bytes removed and counted in the extract step"
    return outcome


def _empty_night(env: Env) -> Outcome:
    lines = [line.replace("@", "(at)") .replace("555", "x") for line in GOOD]  # no valid contact point anywhere
    case = _bad_leads(lines)
    outcome = case(env)
    if outcome.survived:
        wh = env.warehouse()
        q = int(wh.read("SELECT COUNT(DISTINCT row_key) AS n FROM quarantine WHERE entity = 'leads'")["n"][0])
        outcome = Outcome(q == len(lines), outcome.lost, outcome.duplicated,
                          f"{q} quarantined rows and the ledger loaded")
    return outcome


def _header_only(env: Env) -> Outcome:
    return _bad_leads([], expected=0)(env)


def _ragged_and_blank(env: Env) -> Outcome:
    lines = GOOD[:3] + ["", "L21,Too,Many,many@x.com,,X,,US,O1,Open,Web,2026-11-10,2026-11-22,0,EXTRA,MORE",
                        "L22,Too,Few"] + GOOD[3:]
    return _bad_leads(lines, expected=len(GOOD) + 2)(env)


def _crlf_bom_unicode(env: Env) -> Outcome:
    lines = GOOD[:5] + ["L23,Zoë,Ørsted,zoe@ørsted.dk,,Ørsted A/S,Ingeniør,DK,O1,Open,Web,2026-11-10,2026-11-22,0",
                        "L24,😀,Emoji,emoji@x.com,,X,,US,O1,Open,Web,2026-11-10,2026-11-22,0"] + GOOD[5:]
    return _bad_leads(lines, mutate_bytes=lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n"))(env)


def _hostile_values(env: Env) -> Outcome:
    lines = GOOD + [
        'L25,"<img src=x onerror=alert(1)>",X,xss@x.com,,"=HYPERLINK(""http://x"")",,US,O1,Open,Web,2026-11-10,2026-11-22,0',
        "L26,Robert'); DROP TABLE golden_leads;--,X,bobby@x.com,,X,,US,O1,Open,Web,2026-11-10,2026-11-22,0",
        "L27," + "A" * 5000 + ",Long,long@x.com,,X,,US,O1,Open,Web,2026-11-10,2026-11-22,0",
        "L28,Date,Bad,date@x.com,,X,,US,O1,Open,Web,2026-13-45,2026-11-22,0",
        "L29,   ,Blank,   ,   ,X,,US,O1,Open,Web,2026-11-10,2026-11-22,0",
        "L30,Bool,Bad,bool@x.com,,X,,US,O1,Open,Web,2026-11-10,2026-11-22,maybe",
    ]
    return _bad_leads(lines)(env)


def _duplicate_ids(env: Env) -> Outcome:
    lines = GOOD + [GOOD[0], GOOD[0].replace("2026-11-20", "2026-11-21")]
    return _bad_leads(lines)(env)


def _undecodable(env: Env) -> Outcome:
    from slowburn.contracts import ContractError
    sources = env.sources()
    (sources.parent / "leads.csv").write_bytes(LEADS_CSV.replace("Acme Inc.", "Acm\xe9").encode("latin-1"))
    before = state(env.warehouse())
    return refused(env, run_all_catching(env.ctx(sources)), (ContractError,), before,
                   "undecodable file: refused, names the line and `encoding:`")


def _missing_column(env: Env) -> Outcome:
    from slowburn.contracts import ContractError
    sources = env.sources()
    csv = sources.parent / "leads.csv"
    csv.write_text(csv.read_text().replace("Mail,", "EmailAddress,", 1))
    before = state(env.warehouse())
    return refused(env, run_all_catching(env.ctx(sources)), (ContractError,), before,
                   "missing mapped column: refused, names the column and the fix")


# ----------------------------------------------------------------------------------------- crashes
def _crash(step: str, injector: Callable[[], None], retry_new_attempt: bool = False) -> Callable:
    """Steps before `step` run; `step` is SIGKILLed in a child; then it is retried like Airflow would."""
    def case(env: Env) -> Outcome:
        from slowburn.pipeline import run_step
        sources = env.sources()
        ctx = env.ctx(sources)
        for earlier in STEPS[:STEPS.index(step)]:
            run_step(ctx, earlier)

        def child():
            injector()
            run_step(ctx, step)
        code, message = in_child(child)
        if code != -signal.SIGKILL:
            return Outcome(False, note=f"the crash did not happen (exit {code}: {message[:100]})")
        if step == "load" and not env.warehouse().read("SELECT * FROM run_ledger").empty:
            return Outcome(False, note="a killed load left a ledger row")
        retry = env.ctx(sources) if retry_new_attempt else ctx
        try:
            for later in (STEPS if retry_new_attempt else STEPS[STEPS.index(step):]):
                run_step(retry, later)
        except Exception as exc:  # noqa: BLE001
            return Outcome(False, note=f"retry failed: {type(exc).__name__}: {str(exc)[:120]}")
        json.loads((retry.run_dir / "summary.json").read_text(encoding="utf-8"))
        strays = [p.name for p in retry.run_dir.glob(".*.tmp")]
        return committed(env, note="killed, retried, same counts" + (f"; stray temp files ignored: {len(strays)}"
                                                                     if strays else ""))
    return case


# ------------------------------------------------------------------------------------- re-runs, state
def _rerun_same_date(env: Env) -> Outcome:
    from slowburn.pipeline import run_all
    sources = env.sources()
    run_all(env.ctx(sources))
    first = state(env.warehouse())
    run_all(env.ctx(sources))
    second = state(env.warehouse())
    same = {t: first[t] == second[t] for t in ("current_leads", "lead_links", "golden_leads", "sales_queue",
                                                "nurture_queue", "lead_scores", "quarantine")}
    outcome = committed(env)
    if not all(same.values()):
        return Outcome(False, outcome.lost, outcome.duplicated, f"re-run changed {[t for t, s in same.items() if not s]}")
    outcome.note = "re-run replaced its rows: identical tables"
    return outcome


def _rerun_older_date(env: Env) -> Outcome:
    from slowburn.pipeline import run_all
    from slowburn.warehouse import OlderRunRefused
    sources = env.sources()
    run_all(env.ctx(sources))
    run_all(env.ctx(sources, days=1))
    before = state(env.warehouse())
    return refused(env, run_all_catching(env.ctx(sources)), (OlderRunRefused,), before,
                   "older date refused; state untouched")


def _bounded_extract(env: Env) -> Outcome:
    from slowburn.pipeline import run_all
    sources = env.sources()
    csv = sources.parent / "leads.csv"
    csv.write_text(csv.read_text() + "L40,Late,Row,late@x.com,,Late,,US,O1,Open,Web,2026-11-23,2026-11-23T12:00:00,0\n")
    run_all(env.ctx(sources))
    wh = env.warehouse()
    first = set(wh.read("SELECT source_id FROM landed_leads")["source_id"])
    run_all(env.ctx(sources, days=1))
    second = wh.read("SELECT source_id FROM landed_leads WHERE run_id = '2026-11-24T000000'")["source_id"].tolist()
    ok = "L40" not in first and second == ["L40"]
    outcome = committed(env, expected_records=1, same_as_reference=False)
    return Outcome(ok and outcome.survived, outcome.lost, outcome.duplicated,
                   "later change left for the later night" if ok else f"night 1 {sorted(first)}, night 2 {second}")


def _lost_run_folder(env: Env) -> Outcome:
    """Queue history comes from the warehouse: losing a run folder re-queues nobody, changes no owner."""
    from slowburn.pipeline import run_all
    sources = env.sources()
    run_all(env.ctx(sources))
    run_all(env.ctx(sources, days=1))
    wh = env.warehouse()
    cols = "golden_id, owner_id, queued_at, respond_by"
    before = wh.read(f"SELECT {cols} FROM sales_queue ORDER BY golden_id")
    shutil.rmtree(env.work / "home" / "runs")
    run_all(env.ctx(sources, days=1))
    after = wh.read(f"SELECT {cols} FROM sales_queue ORDER BY golden_id")
    changed = len(before.merge(after, how="outer", indicator=True).query("_merge != 'both'"))
    outcome = committed(env, expected_records=0, same_as_reference=False)
    return Outcome(changed == 0 and outcome.survived, outcome.lost, outcome.duplicated + changed,
                   f"{len(after)} sales rows, {changed} changed after the run folder was deleted")


def _truncated_output(env: Env) -> Outcome:
    """A damaged step output (left by something else) is named, and re-running its step repairs it."""
    from slowburn.contracts import ContractError
    from slowburn.pipeline import run_step
    sources = env.sources()
    ctx = env.ctx(sources)
    for step in STEPS[:STEPS.index("route")]:
        run_step(ctx, step)
    path = ctx.path("golden_leads")
    path.write_bytes(path.read_bytes()[:100])
    try:
        run_step(ctx, "route")
        return Outcome(False, note="route read a truncated golden_leads.parquet")
    except ContractError as exc:
        if "golden_leads.parquet" not in str(exc) or "dedupe" not in str(exc):
            return Outcome(False, note=f"unclear error: {exc}")
    for step in STEPS[STEPS.index("dedupe"):]:
        run_step(ctx, step)
    return committed(env, note="named the file and the step; re-running dedupe repaired it")


def _mixed_attempts(env: Env) -> Outcome:
    """A file from another attempt in the folder (the old 'mix'): the load refuses it."""
    from slowburn.pipeline import AttemptMismatch, run_step
    sources = env.sources()
    first = env.ctx(sources)
    for step in STEPS[:STEPS.index("load")]:
        run_step(first, step)
    second = env.ctx(sources)
    for step in STEPS[:STEPS.index("score")]:
        run_step(second, step)
    shutil.copy(first.path("lead_scores"), second.path("lead_scores"))
    for step in ("route", "flag"):
        shutil.copy(first.path({"route": "sales_queue", "flag": "lead_flags"}[step]),
                    second.path({"route": "sales_queue", "flag": "lead_flags"}[step]))
    shutil.copy(first.path("nurture_queue"), second.path("nurture_queue"))
    before = state(env.warehouse())
    try:
        run_step(second, "load")
        return Outcome(False, note="loaded files of another attempt")
    except AttemptMismatch as exc:
        return refused(env, exc, (AttemptMismatch,), before, "load refused another attempt's files")


def _superseded_attempt(env: Env) -> Outcome:
    """Attempt 1 stalls before its load; attempt 2 of the same run runs and loads; attempt 1 wakes up."""
    from slowburn.pipeline import run_all, run_step
    from slowburn.warehouse import RunSuperseded
    sources = env.sources()
    old = env.ctx(sources)
    for step in STEPS[:STEPS.index("load")]:
        run_step(old, step)
    run_all(env.ctx(sources))
    before = state(env.warehouse())
    try:
        run_step(old, "load")
        exc = None
    except Exception as err:  # noqa: BLE001
        exc = err
    outcome = refused(env, exc, (RunSuperseded,), before, "the stale attempt's load was refused")
    if outcome.survived:
        final = committed(env)
        return Outcome(final.survived, final.lost, final.duplicated, outcome.note)
    return outcome


def _concurrent(days_a: int, days_b: int) -> Callable:
    def case(env: Env) -> Outcome:
        from slowburn.pipeline import run_all
        from slowburn.warehouse import RunRefused
        sources = env.sources()
        env.warehouse().ensure_schema()
        mp = multiprocessing.get_context("fork")
        start = mp.Event()
        reader, writer = mp.Pipe(duplex=False)

        def one(i, days):
            def main():
                start.wait()
                try:
                    run_all(env.ctx(sources, days=days))
                    writer.send((i, "ok"))
                except BaseException as exc:  # noqa: BLE001
                    writer.send((i, f"{type(exc).__name__}|{isinstance(exc, RunRefused)}|{str(exc)[:150]}"))
                os._exit(0)
            return mp.Process(target=main)
        procs = [one(0, days_a), one(1, days_b)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(600)
        results = dict(reader.recv() for _ in range(sum(1 for _ in procs)) if reader.poll(5))
        ok = [d for d, r in results.items() if r == "ok"]
        failed = {d: r for d, r in results.items() if r != "ok"}
        named = all(r.split("|")[1] == "True" for r in failed.values())
        if not ok or not named or len(results) != 2:
            return Outcome(False, note=f"results {results}")
        outcome = committed(env, same_as_reference=days_a == days_b)
        errors = sorted({r.split("|")[0] for r in failed.values()}) or ["none (the runs did not overlap)"]
        outcome.note = f"{len(ok)} committed, the other stopped with {', '.join(errors)}"
        return outcome
    return case


def _dead_lock_holder(env: Env) -> Outcome:
    """A run SIGKILLed mid-run keeps the lock: the next night is refused by name until the lock goes stale."""
    from slowburn.pipeline import run_all, run_step
    from slowburn.warehouse import RunLocked
    sources = env.sources()
    dead = env.ctx(sources)

    def child():
        run_step(dead, "extract")
        run_step(dead, "normalise")
        die()
    in_child(child)
    exc = run_all_catching(env.ctx(sources, days=1))
    if not isinstance(exc, RunLocked) or "slowburn unlock" not in str(exc):
        return Outcome(False, note=f"expected RunLocked, got {exc!r}")
    os.environ["SLOWBURN_LOCK_STALE_MINUTES"] = "0"
    try:
        run_all(env.ctx(sources, days=1))
    finally:
        del os.environ["SLOWBURN_LOCK_STALE_MINUTES"]
    return committed(env, same_as_reference=False, note="RunLocked while fresh; taken over once stale")


# ------------------------------------------------------------------------------------------------ CLI
def cli(args: list[str], env_vars: dict | None = None) -> tuple[int, str]:
    from slowburn import cli as cli_module
    err = io.StringIO()
    saved = {k: os.environ.get(k) for k in (env_vars or {})}
    os.environ.update(env_vars or {})
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_module.main(args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, err.getvalue()


def _clean_cli(code: int, err: str, must: tuple[str, ...], note: str) -> Outcome:
    problems = []
    if code != 2:
        problems.append(f"exit {code}")
    if "Traceback" in err:
        problems.append("traceback printed")
    if SECRET in err or "S3cretPw" in err:
        problems.append("secret printed")
    last = [line for line in err.splitlines() if line.startswith("slowburn: error")]
    for word in must:
        if not any(word in line for line in last):
            problems.append(f"message lacks {word!r}")
    return Outcome(not problems, note="; ".join(problems) or note + ": " + (last[-1][16:110] if last else ""))


def _cli_bad_yaml(env: Env) -> Outcome:
    sources = env.sources()
    sources.write_text(sources.read_text().replace("kind: file\n    entity: leads", "kind: [file\n    entity: leads", 1))
    code, err = cli(["run", "--sources", str(sources), "--home", str(env.work / "home"), "--warehouse", env.url,
                     "--logical-date", "2026-11-23"])
    return _clean_cli(code, err, ("sources.yaml", "line", "column"), "bad YAML")


def _cli_truncated_parquet(env: Env) -> Outcome:
    sources = env.sources()
    pd.DataFrame({"owner_id": ["O1"]}).to_parquet(sources.parent / "owners.parquet")
    data = (sources.parent / "owners.parquet").read_bytes()
    (sources.parent / "owners.parquet").write_bytes(data[: len(data) // 2])
    sources.write_text(sources.read_text().replace("path: owners.csv", "path: owners.parquet"))
    code, err = cli(["run", "--sources", str(sources), "--home", str(env.work / "home"), "--warehouse", env.url,
                     "--logical-date", "2026-11-23"])
    return _clean_cli(code, err, ("owners.parquet",), "truncated Parquet")


def _cli_bad_url(env: Env) -> Outcome:
    sources = env.sources()
    url = "postgresql://slowburn:S3cretPw@db:notaport/x" if env.backend == "postgresql" else "sqlite:/::nope"
    code, err = cli(["run", "--sources", str(sources), "--home", str(env.work / "home"), "--warehouse", url])
    return _clean_cli(code, err, ("URL",), "unparseable warehouse URL")


def _cli_warehouse_down(env: Env) -> Outcome:
    sources = env.sources()
    url = ("postgresql://slowburn:S3cretPw@127.0.0.1:1/nowhere" if env.backend == "postgresql"
           else f"sqlite:///{env.work / 'no' / 'such' / 'dir' / 'x' / 'wh.db'}")
    if env.backend == "sqlite":
        (env.work / "no").write_text("a file where a folder should be")
    code, err = cli(["run", "--sources", str(sources), "--home", str(env.work / "home"), "--warehouse", url,
                     "--logical-date", "2026-11-23"])
    return _clean_cli(code, err, ("warehouse",) if env.backend == "postgresql" else ("no",), "warehouse down")


class _Refuses(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self._refuse()

    def do_POST(self):  # noqa: N802
        self._refuse()

    def _refuse(self):
        body = json.dumps({"status": "error", "message": "Authentication credentials not found", "category":
                           "INVALID_AUTHENTICATION"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _cli_api_error(env: Env) -> Outcome:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        folder = env.work / "api"
        folder.mkdir()
        (folder / "sources.yaml").write_text(
            "sources:\n  - name: hs\n    kind: hubspot\n    entity: leads\n    connection: hs_faults\n"
            "    constants: {source_system: hubspot}\n    columns: {source_id: id, email: email}\n")
        conn = json.dumps({"host": f"http://127.0.0.1:{server.server_port}", "password": SECRET,
                           "extra": {"backoff": 0.001}})
        code, err = cli(["run", "--sources", str(folder / "sources.yaml"), "--home", str(env.work / "home"),
                         "--warehouse", env.url, "--logical-date", "2026-11-23"], {"SLOWBURN_CONN_HS_FAULTS": conn})
    finally:
        server.shutdown()
    return _clean_cli(code, err, ("401",), "API error")


# ---------------------------------------------------------------------------------------------- cases
CASES = [
    Case("unterminated_quote", "bad_input", _unterminated_quote, "a stray quote costs one line"),
    Case("nul_byte", "bad_input", _nul_byte, "NUL bytes in values"),
    Case("empty_night", "bad_input", _empty_night, "no valid lead at all"),
    Case("header_only", "bad_input", _header_only, "a file with a header and no rows"),
    Case("ragged_and_blank", "bad_input", _ragged_and_blank, "too many / too few fields, blank lines"),
    Case("crlf_bom_unicode", "bad_input", _crlf_bom_unicode, "CRLF, byte-order mark, non-ASCII"),
    Case("hostile_values", "bad_input", _hostile_values, "markup, formulas, SQL, 5k-char, bad dates, blanks"),
    Case("duplicate_ids", "bad_input", _duplicate_ids, "the same source id three times"),
    Case("undecodable", "bad_input", _undecodable, "latin-1 bytes in a UTF-8 source"),
    Case("missing_column", "bad_input", _missing_column, "a mapped column is absent"),
    *[Case(f"sigkill_{step}", "crash", _crash(step, kill_in_load if step == "load" else
                                             kill_mid_text if step == "summarize" else kill_at_rename),
           f"SIGKILL in {step}, then the task is retried") for step in STEPS],
    Case("torn_parquet_write", "crash", _crash("dedupe", kill_mid_parquet), "SIGKILL with half a Parquet written"),
    Case("sigkill_extract_new_attempt", "crash", _crash("validate", kill_at_rename, retry_new_attempt=True),
         "SIGKILL, then the whole DAG run is cleared (a new attempt)"),
    Case("truncated_output", "crash", _truncated_output, "a damaged step output"),
    Case("rerun_same_date", "rerun", _rerun_same_date),
    Case("rerun_older_date", "rerun", _rerun_older_date),
    Case("bounded_extract", "rerun", _bounded_extract),
    Case("lost_run_folder", "rerun", _lost_run_folder),
    Case("mixed_attempts", "concurrency", _mixed_attempts),
    Case("superseded_attempt", "concurrency", _superseded_attempt),
    Case("concurrent_same_date", "concurrency", _concurrent(0, 0)),
    Case("concurrent_two_dates", "concurrency", _concurrent(0, 1)),
    Case("dead_lock_holder", "concurrency", _dead_lock_holder),
    Case("cli_bad_yaml", "cli", _cli_bad_yaml),
    Case("cli_truncated_parquet", "cli", _cli_truncated_parquet),
    Case("cli_bad_url", "cli", _cli_bad_url),
    Case("cli_warehouse_down", "cli", _cli_warehouse_down),
    Case("cli_api_error", "cli", _cli_api_error),
]
BY_NAME = {c.name: c for c in CASES}


def reference_counts(backend_name: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="slowburn-faults-ref-") as tmp, backend(backend_name, Path(tmp)) as url:
        env = Env(backend_name, Path(tmp), url)
        from slowburn.pipeline import run_all
        run_all(env.ctx(env.sources()))
        return counts(env.warehouse())


def run_case(case: Case, backend_name: str, reference: dict) -> Outcome:
    with tempfile.TemporaryDirectory(prefix=f"slowburn-faults-{case.name}-") as tmp, \
            backend(backend_name, Path(tmp)) as url:
        env = Env(backend_name, Path(tmp), url, reference)
        try:
            return case.run(env)
        except Exception as exc:  # noqa: BLE001 - a case that blows up did not survive
            return Outcome(False, note=f"{type(exc).__name__}: {str(exc)[:150]}")


def main(argv=None) -> int:
    import logging
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--cases", nargs="+", choices=sorted(BY_NAME), default=[c.name for c in CASES])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "faults"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("slowburn").setLevel(logging.CRITICAL)
    backends = [b for b in args.backends if b == "sqlite" or postgres_available()]
    skipped = sorted(set(args.backends) - set(backends))
    rows, started = [], time.perf_counter()
    for b in backends:
        reference = reference_counts(b)
        for name in args.cases:
            t0 = time.perf_counter()
            outcome = run_case(BY_NAME[name], b, reference)
            rows.append({"case": name, "kind": BY_NAME[name].kind, "backend": b, "survived": outcome.survived,
                         "lost": outcome.lost, "duplicated": outcome.duplicated, "note": outcome.note,
                         "seconds": round(time.perf_counter() - t0, 1)})
            r = rows[-1]
            print(f"{'ok  ' if r['survived'] else 'FAIL'} {b:<10} {name:<28} lost={r['lost']} dup={r['duplicated']} "
                  f"{r['seconds']:>5}s  {r['note'][:110]}", flush=True)
    survived = sum(r["survived"] for r in rows)
    total = {"survived": survived, "cases": len(rows), "lost": sum(r["lost"] for r in rows),
             "duplicated": sum(r["duplicated"] for r in rows), "backends": backends, "skipped_backends": skipped,
             "seconds": round(time.perf_counter() - started, 1)}
    print(f"\nsurvived {survived}/{len(rows)}, rows lost {total['lost']}, rows duplicated {total['duplicated']} "
          f"({', '.join(backends)}; {total['seconds']} s)" + (f"; skipped: {skipped}" if skipped else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"total": total, "cases": rows}, indent=2), encoding="utf-8")
    lines = ["# Fault matrix (`make faults`)", "",
             f"survived **{survived}/{len(rows)}**, rows lost **{total['lost']}**, rows duplicated "
             f"**{total['duplicated']}** on {', '.join(backends)} in {total['seconds']} s (shared 2-core machine).",
             "", "| case | kind | backend | survived | lost | dup | note |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['case']} | {r['kind']} | {r['backend']} | {'yes' if r['survived'] else '**no**'} | {r['lost']} | "
              f"{r['duplicated']} | {r['note'].replace('|', '/')} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0 if survived == len(rows) and not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
