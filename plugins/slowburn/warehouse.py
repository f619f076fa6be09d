"""The warehouse: SQLAlchemy engine, schema migrations (slowburn.schema, slowburn.migrations), and
transactional, idempotent run loads."""
from __future__ import annotations

import io
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from slowburn.arrowkeys import is_in, joined, positions
from slowburn.contracts import ContractError
from slowburn.db import create_engine

log = logging.getLogger(__name__)

# Run tables keep history: a run's load replaces only its own rows. score_history and queue_history
# are written by the load itself, from what changed in lead_scores and the queues.
RUN_TABLES = ("landed_leads", "touches", "quarantine", "owners", "source_watermarks", "queue_history",
              "score_history")
# State tables hold the current picture, one row per business key. A load writes only the rows whose
# key is new or whose values changed (compared by row_digest) and deletes the keys that are gone, in
# the same transaction: a night costs what changed, not the size of the database. run_id on a state
# row names the run that last changed it (current_leads and lead_links: the run that landed or linked it).
STATE_KEYS = {
    "current_leads": ("source_system", "source_id"),
    "lead_links": ("source_system", "source_id"),
    "golden_leads": ("golden_id",),
    "lead_scores": ("golden_id",),
    "lead_reasons": ("golden_id",),
    "sales_queue": ("golden_id",),
    "nurture_queue": ("golden_id",),
    "lead_flags": ("golden_id", "flag", "first_run_id"),
    "outcomes": ("source_system", "source_id"),
}
STATE_TABLES = tuple(STATE_KEYS)
# Facts that arrive incrementally: a key missing from tonight's frame is not gone, so never deleted.
# lead_reasons holds only the leads explained tonight; the others keep theirs (those of leads no
# longer scored are deleted after lead_scores, see _prune_reasons).
UPSERT_ONLY = ("outcomes", "lead_reasons")
# Frames that carry each row's own run_id (compared like any value); other state rows get the loading run's.
OWN_RUN_ID = ("current_leads", "lead_links")
# Columns that say when a row was last computed, not what it says: alone, they never make a row changed.
# A probability moves a little every night as engagement decays; the score (its whole points) and tier
# are what people and the queues act on, so the stored probability is the one of the last such change.
NOT_COMPARED = {"lead_scores": ("scored_at", "probability"), "lead_reasons": ("reasons_at",),
                "lead_flags": ("last_seen_run_id",),
                "sales_queue": ("probability",)}
# Rows a frame speaks for: a closed flag is history that no later frame repeats, so only open flags
# can be updated or deleted by a load.
SCOPE = {"lead_flags": "COALESCE(status, 'open') = 'open'"}
QUEUES = ("sales_queue", "nurture_queue")
FLOAT_DIGITS = 4  # floats are compared at 4 decimals: a probability drifting by 1e-6 is not a change

SUPPORTED_DIALECTS = ("sqlite", "postgresql")


LOCK_NAME = "warehouse"


class RunRefused(RuntimeError):
    """The warehouse will not take this run now; the message says why and what to do."""


class RunLocked(RunRefused):
    """Another run holds the warehouse: two runs at once would mix their results."""


class RunSuperseded(RunRefused):
    """A newer attempt of the same run has taken over (or already loaded) the run."""


class OlderRunRefused(RunRefused):
    """The run is older than the newest loaded run: loading it would rewind the current state."""


class WarehouseBusy(RunRefused):
    """Another process kept the SQLite warehouse's write lock for longer than we wait."""


def lock_stale_after() -> pd.Timedelta:
    return pd.Timedelta(minutes=float(os.environ.get("SLOWBURN_LOCK_STALE_MINUTES", "120")))


def include_dir() -> Path:
    """include/ beside plugins/, or SLOWBURN_INCLUDE_DIR when the package is installed elsewhere."""
    env = os.environ.get("SLOWBURN_INCLUDE_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "include"
    if not (path / "sql").is_dir():
        raise FileNotFoundError(f"{path / 'sql'} not found; set SLOWBURN_INCLUDE_DIR to the repository's include/")
    return path


@lru_cache(maxsize=None)
def sql_text(name: str) -> str:
    return (include_dir() / "sql" / name).read_text(encoding="utf-8")


def _without_secret(text: str, url) -> str:
    try:
        password = sa.make_url(url).password
    except Exception:  # noqa: BLE001
        return text.replace(str(url), "<url>")
    return text.replace(str(password), "***") if password else text


def redacted(url: str | sa.URL) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


class Warehouse:
    def __init__(self, url: str):
        self.url = url
        try:
            # SQLite: wait for another writer (a load) for up to a minute, not pysqlite's 5 s.
            sqlite = sa.make_url(url).get_backend_name() == "sqlite"
            self.engine = create_engine(url, **({"connect_args": {"timeout": 60}} if sqlite else {}))
        except (sa.exc.ArgumentError, ValueError, ImportError) as exc:
            try:
                shown = redacted(url)
            except Exception:  # noqa: BLE001 - unparseable: it may hold a password, so it is not shown
                shown = "(not shown: it cannot be parsed)"
            hint = " (write postgresql://, not postgres://)" if str(url).startswith("postgres:") else ""
            raise ContractError(f"the warehouse URL {shown} cannot be used: {type(exc).__name__}: "
                                f"{_without_secret(str(exc), url)}{hint}. Give --warehouse, $SLOWBURN_WAREHOUSE_URL or "
                                "the slowburn_warehouse Connection as a SQLAlchemy URL, e.g. "
                                "postgresql://user@host:5432/db or sqlite:////abs/path/warehouse.db") from None
        self.dialect = self.engine.dialect.name
        self._schema_at_head = False
        if self.dialect == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        if self.dialect not in SUPPORTED_DIALECTS:
            raise ValueError(f"warehouse dialect {self.dialect!r} is not supported; use sqlite or postgresql")

    def __repr__(self) -> str:
        return f"Warehouse({redacted(self.url)})"

    def ensure_schema(self) -> None:
        """Bring the warehouse to the newest schema revision (slowburn/migrations), once per instance.

        Every step calls this, so the common case is one version read. A warehouse made by the old
        schema.sql is adopted by revision 0001 (missing tables and columns added), then upgraded.
        """
        if self._schema_at_head:
            return
        from slowburn import migrations

        with self.engine.connect() as conn:
            at_head = migrations.current(conn) == migrations.head()
        if not at_head:
            self.upgrade_schema()
        self._schema_at_head = True

    def upgrade_schema(self) -> str:
        """Run the migrations up to head in one transaction, serialised between processes; returns the revision.

        PostgreSQL: an advisory lock (two runs creating the same table at once collide in pg_type).
        SQLite: BEGIN IMMEDIATE takes the write lock first, which also makes the DDL one transaction.
        """
        from slowburn import migrations

        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('slowburn.ensure_schema'))")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            before = migrations.current(conn)
            if before != migrations.head():
                log.info("warehouse %s: schema revision %s -> %s", redacted(self.url), before or "none",
                         migrations.head())
                migrations.upgrade(conn)
            revision = migrations.current(conn)
        self._schema_at_head = True
        return revision

    def schema_revision(self) -> str | None:
        """The migration revision the warehouse is at; None when empty or made before migrations."""
        from slowburn import migrations

        with self.engine.connect() as conn:
            return migrations.current(conn)

    def previous_watermarks(self, run_id: str, logical_date: pd.Timestamp) -> dict[str, str]:
        self.ensure_schema()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(sql_text("previous_watermarks.sql")),
                                {"run_id": run_id, "logical_date": self._ts_param(logical_date)}).all()
        return {name: value for name, value in rows}

    def _ts_param(self, ts: pd.Timestamp):
        ts = as_utc(ts)
        return ts.strftime("%Y-%m-%dT%H:%M:%S") if self.dialect == "sqlite" else ts.to_pydatetime()

    def acquire_run_lock(self, run_id: str, attempt: int, token: str) -> None:
        """Take or renew the warehouse lock for this attempt, or raise RunLocked / RunSuperseded.

        Called by every step before it works, so a dead run is noticed by its missing heartbeat.
        """
        import socket

        self.ensure_schema()
        now = self._ts_param(pd.Timestamp.now(tz="UTC"))
        mine = {"name": LOCK_NAME, "run_id": run_id, "attempt": attempt, "token": token,
                "holder": f"{socket.gethostname()}:{os.getpid()}", "now": now}
        for _ in range(5):
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text("INSERT INTO run_lock (lock_name, run_id, attempt, token, holder, "
                                         "acquired_at, heartbeat_at) VALUES (:name, :run_id, :attempt, :token, "
                                         ":holder, :now, :now)"), mine)
                return
            except sa.exc.IntegrityError:
                pass
            held = self.run_lock()
            if held is None:
                continue  # released in between: try to insert again
            if held["token"] != token:
                if held["run_id"] == run_id and int(held["attempt"]) > attempt:
                    raise RunSuperseded(f"run {run_id}: attempt {attempt} was superseded by attempt "
                                        f"{held['attempt']} ({held['holder']}); this attempt stops here")
                newer_attempt = held["run_id"] == run_id and int(held["attempt"]) < attempt
                idle = pd.Timestamp.now(tz="UTC") - as_utc(held["heartbeat_at"])
                if not newer_attempt and idle < lock_stale_after():
                    raise RunLocked(
                        f"the warehouse is locked by run {held['run_id']} attempt {held['attempt']} "
                        f"({held['holder']}, started {held['acquired_at']}, last active {held['heartbeat_at']}); "
                        f"run {run_id} refuses to run at the same time because the two would mix their results. "
                        "Wait for that run to finish; if it died, its lock expires after "
                        f"{lock_stale_after()} without activity, or release it with `slowburn unlock`")
                log.warning("warehouse lock: run %s attempt %s takes over from run %s attempt %s (%s)", run_id,
                            attempt, held["run_id"], held["attempt"],
                            "an older attempt of the same run" if newer_attempt else f"idle for {idle}")
            with self.engine.begin() as conn:  # compare-and-swap on the holder's token
                taken = conn.execute(sa.text(
                    "UPDATE run_lock SET run_id = :run_id, attempt = :attempt, token = :token, holder = :holder, "
                    "acquired_at = CASE WHEN token = :token THEN acquired_at ELSE :now END, heartbeat_at = :now "
                    "WHERE lock_name = :name AND token = :old"), {**mine, "old": held["token"]}).rowcount
            if taken == 1:
                return
        raise RunLocked(f"run {run_id}: could not take the warehouse lock; another run keeps changing it")

    def run_lock(self) -> dict | None:
        """The current holder of the warehouse lock, or None."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM run_lock WHERE lock_name = :name"),
                               {"name": LOCK_NAME}).mappings().first()
        return dict(row) if row else None

    def release_run_lock(self, run_id: str | None = None, token: str | None = None) -> dict | None:
        """Remove the lock (only `run_id`'s / only this attempt's, when given); returns what was released."""
        held = self.run_lock()
        if held is None or (run_id is not None and held["run_id"] != run_id) or (
                token is not None and held["token"] != token):
            return None
        with self.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM run_lock WHERE lock_name = :name AND token = :token"),
                         {"name": LOCK_NAME, "token": held["token"]})
        return held

    def refuse_older_run(self, run_id: str, conn=None) -> None:
        """Raise OlderRunRefused when a run with a later logical date has already loaded.

        State tables (current_leads, links, golden records, queues) hold the newest night's picture;
        an older night's load would replace them with an older one, and its flags and queues would be
        computed from state that already includes later nights.
        """
        sql = sa.text("SELECT MAX(run_id) FROM run_ledger WHERE status = 'success' AND run_id > :run_id")
        if conn is None:
            self.ensure_schema()
            with self.engine.connect() as own:
                newer = own.execute(sql, {"run_id": run_id}).scalar()
        else:
            newer = conn.execute(sql, {"run_id": run_id}).scalar()
        if newer:
            raise OlderRunRefused(
                f"run {run_id} is older than run {newer}, which is already loaded: loading it would rewind "
                "current_leads, lead_links, golden_leads and the queues to an older night. Nothing was changed. "
                f"To redo {run_id}, re-run it and every later night in date order after deleting their "
                "run_ledger rows, or leave history as it is")

    def replace_run(self, run_id: str, frames: dict[str, pd.DataFrame | Callable[[], pd.DataFrame]],
                    ledger: dict, token: str | None = None, digests: "StateDigests | None" = None) -> dict:
        """Replace everything `run_id` wrote with `frames` and its ledger row, all or nothing.

        A frame may be given as a function that reads it: tables are then read, inserted and freed one
        at a time, so the load holds one table in memory, not the whole run.
        With `token` (the attempt's), the transaction first proves that this attempt holds the run lock
        and that no newer run or newer attempt has loaded, then releases the lock as it commits; a
        concurrent load waits on the lock row and then fails with a named error, never a mix.
        With `digests`, the state tables' stored digests are taken from its copy when that copy provably
        matches the table (StateDigests), and tonight's are handed to it to keep.
        """
        self.ensure_schema()
        columns = self._columns()
        unknown = set(frames) - set(RUN_TABLES) - set(STATE_TABLES)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not warehouse tables")
        try:
            with self.engine.begin() as conn:
                if token is not None:
                    self._claim_load(conn, run_id, token, ledger.get("attempt"))
                written = self._replace(conn, run_id, frames, ledger, columns, digests)
                if token is not None:
                    conn.execute(sa.text("DELETE FROM run_lock WHERE lock_name = :name AND token = :token"),
                                 {"name": LOCK_NAME, "token": token})
        except sa.exc.OperationalError as exc:
            if "database is locked" in str(exc.orig):
                raise WarehouseBusy(f"run {run_id}: the SQLite warehouse {redacted(self.url)} stayed locked by "
                                    "another writer for 60 s; nothing was loaded. Re-run the load when the other "
                                    "run has finished") from None
            raise
        return written

    def _claim_load(self, conn, run_id: str, token: str, attempt) -> None:
        renewed = conn.execute(sa.text("UPDATE run_lock SET heartbeat_at = :now WHERE lock_name = :name "
                                       "AND token = :token"),
                               {"now": self._ts_param(pd.Timestamp.now(tz="UTC")), "name": LOCK_NAME,
                                "token": token}).rowcount
        if renewed != 1:
            held = conn.execute(sa.text("SELECT run_id, attempt, holder FROM run_lock WHERE lock_name = :name"),
                                {"name": LOCK_NAME}).mappings().first()
            who = (f"run {held['run_id']} attempt {held['attempt']} ({held['holder']}) holds it" if held
                   else "nobody holds it (another attempt already loaded and released it)")
            raise RunSuperseded(f"run {run_id}: this attempt no longer holds the warehouse lock: {who}. "
                                "Nothing was loaded; start a new attempt from extract if this run must load")
        self.refuse_older_run(run_id, conn)
        loaded = conn.execute(sa.text("SELECT attempt FROM run_ledger WHERE run_id = :run_id"),
                              {"run_id": run_id}).scalar()
        if loaded is not None and attempt is not None and int(loaded) > int(attempt):
            raise RunSuperseded(f"run {run_id}: attempt {loaded} is already loaded; attempt {attempt} is older "
                                "and does not replace it")

    def _replace(self, conn, run_id, frames, ledger, columns, digests=None) -> dict:
        """Write the run; returns rows written per table ({table: {inserted, updated, deleted}})."""
        rerun = conn.execute(sa.text("SELECT 1 FROM run_ledger WHERE run_id = :run_id"),
                             {"run_id": run_id}).first() is not None
        for table in RUN_TABLES:
            # A re-run keeps the before-images its first load recorded (see _record_queue_before_images).
            keep = " AND change IS NOT NULL" if table == "queue_history" else ""
            conn.execute(sa.text(f"DELETE FROM {table} WHERE run_id = :run_id{keep}"), {"run_id": run_id})
        conn.execute(sa.text("DELETE FROM run_ledger WHERE run_id = :run_id"), {"run_id": run_id})
        written = {}
        for table, source in frames.items():
            frame = source() if callable(source) else source
            if table in STATE_KEYS:
                written[table] = self._sync_state(conn, run_id, table, frame, columns, rerun, digests)
            else:
                frame = frame.assign(run_id=run_id)
                self._insert(conn, table, self._stored(table, frame, columns))
                written[table] = {"inserted": len(frame), "updated": 0, "deleted": 0}
            log.info("load: %s <- %s", table, written[table])
            del frame
        if "lead_reasons" in frames:
            written["lead_reasons"]["deleted"] += self._prune_reasons(conn, run_id)
        for table in ("score_history", "queue_history"):
            if table in written:
                continue
            n = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE run_id = :run_id"),
                             {"run_id": run_id}).scalar()
            written[table] = {"inserted": int(n), "updated": 0, "deleted": 0}
        try:
            steps = json.loads(ledger.get("step_counts") or "{}")
        except ValueError:
            steps = {}
        steps.setdefault("load", {})["rows_written"] = written
        ledger = {**ledger, "step_counts": json.dumps(steps, default=str)}
        ledger_frame = pd.DataFrame([{**ledger, "run_id": run_id}])
        self._insert(conn, "run_ledger", ledger_frame[[c for c in columns["run_ledger"] if c in ledger_frame]])
        return written

    @staticmethod
    def _prune_reasons(conn, run_id: str) -> int:
        """Delete the reasons of leads no longer scored, then prove every scored lead has reasons (a run
        explains only its changed leads, so a lead without stored reasons would stay without)."""
        deleted = conn.execute(sa.text("DELETE FROM lead_reasons WHERE golden_id NOT IN "
                                       "(SELECT golden_id FROM lead_scores)")).rowcount
        missing = conn.execute(sa.text("SELECT COUNT(*), MIN(golden_id) FROM lead_scores s WHERE NOT EXISTS "
                                       "(SELECT 1 FROM lead_reasons r WHERE r.golden_id = s.golden_id)")).first()
        if missing[0]:
            raise ContractError(f"run {run_id}: {missing[0]} scored lead(s) would have no reasons (first: "
                                f"{missing[1]}); nothing was loaded. The run explained only the leads whose "
                                "inputs changed, but the warehouse holds no reasons for these: re-run the night "
                                "from the score step, which explains every lead whose stored reasons are missing")
        return int(deleted or 0)

    @staticmethod
    def _stored(table: str, frame: pd.DataFrame, columns, warn: bool = True) -> pd.DataFrame:
        cols = [c for c in columns[table] if c in frame.columns]
        dropped = sorted(set(frame.columns) - set(columns[table]))
        if dropped and warn:
            log.warning("load: %s has no column(s) %s; their values are not stored", table, dropped)
        return frame[cols]

    def _sync_state(self, conn, run_id: str, table: str, frame: pd.DataFrame, columns, rerun: bool,
                    digests: "StateDigests | None" = None) -> dict:
        """Make `table` equal `frame` by key, writing only new and changed rows and deleting gone keys."""
        keys = list(STATE_KEYS[table])
        if table not in OWN_RUN_ID or "run_id" not in frame.columns:
            frame = frame.assign(run_id=run_id)
        frame = self._stored(table, frame.drop(columns=["row_digest"], errors="ignore"), columns)
        if table in UPSERT_ONLY:
            frame = frame.drop_duplicates(keys, keep="last")
        _check_keys(table, frame, keys)
        ignored = set(NOT_COMPARED.get(table, ())) | (set() if table in OWN_RUN_ID else {"run_id"})
        digest = row_digest(frame, [c for c in frame.columns if c not in ignored])
        extra = ", score, tier" if table == "lead_scores" else ""
        # coerce_float=False: a NULL digest must not turn the column into float64, which rounds 64-bit ints.
        whole = table not in SCOPE and table not in UPSERT_ONLY  # the table equals the frame after the load
        old = self._kept_digests(conn, table, digests) if whole and digests is not None else None
        if old is None and table in UPSERT_ONLY:
            # The frame speaks only for its own keys: read only their digests, not the table's.
            tmp = self._keys_table(conn, keys, frame)
            on = " AND ".join(f"t.{k} = k.{k}" for k in keys)
            old = pd.read_sql(sa.text(f"SELECT {', '.join('t.' + k for k in keys)}, t.row_digest{extra} FROM "
                                      f"{table} t JOIN {tmp} k ON {on}"), conn, coerce_float=False)
        elif old is None:
            where = f" WHERE {SCOPE[table]}" if table in SCOPE else ""
            old = pd.read_sql(sa.text(f"SELECT {', '.join(keys)}, row_digest{extra} FROM {table}{where}"), conn,
                              coerce_float=False)
        # Each frame row's stored row by an Arrow hash lookup on the joined key (a pandas outer merge of
        # a million keys cost seconds a table).
        at = positions(joined(*(frame[k] for k in keys)), joined(*(old[k] for k in keys)))
        if whole and digests is not None:
            digests.keep(table, frame[keys].astype("string").assign(row_digest=digest, **{
                c: frame[c].to_numpy() for c in extra.replace(",", " ").split()}))
        hit = at >= 0
        stored = pd.array(old["row_digest"].tolist(), dtype="Int64")  # exact: never through float64
        stored_digest = stored.to_numpy(dtype=np.int64, na_value=0)
        stored_known = ~stored.isna()
        is_new = ~hit
        changed = hit.copy()
        changed[hit] = ~stored_known[at[hit]] | (stored_digest[at[hit]] != digest[hit])
        seen = np.zeros(len(old), dtype=bool)
        seen[at[hit]] = True
        gone = ~seen if table not in UPSERT_ONLY else np.zeros(len(old), dtype=bool)
        old_keys = old[keys].astype("string")

        def frame_keys(mask):
            return frame.loc[mask, keys].astype("string").reset_index(drop=True)

        if table in QUEUES:
            self._record_queue_before_images(
                conn, run_id, table, pd.concat([frame_keys(changed | is_new), old_keys[gone]], ignore_index=True),
                absent=frame_keys(is_new), columns=columns)
        if table == "lead_scores":
            self._record_score_history(conn, run_id, frame, at, old, is_new | changed, rerun, columns)
        rows = np.flatnonzero(is_new | changed)
        out = frame.iloc[rows].assign(row_digest=digest[rows])
        if self.dialect == "sqlite":
            # Changed rows are updated in place by key (an upsert), which also replaces a new key a scoped
            # table holds out of scope (a flag this run closed, loaded again); deleting them first cost
            # as much as writing them.
            if gone.any():
                self._delete_keys(conn, table, keys, old_keys[gone])
            missing = [c for c in columns[table] if c not in out.columns]  # NULL, as a fresh insert leaves them
            self._insert(conn, table, out.assign(**dict.fromkeys(missing)), upsert_keys=keys)
        else:
            # A scoped table may hold a new key out of scope (a flag this run closed, loaded again): replace it.
            removed = pd.concat([frame_keys(changed | (is_new & (table in SCOPE))), old_keys[gone]],
                                ignore_index=True)
            if len(removed):
                self._delete_keys(conn, table, keys, removed)
            self._insert(conn, table, out)
        return {"inserted": int(is_new.sum()), "updated": int(changed.sum()), "deleted": int(gone.sum()),
                "unchanged": int(hit.sum() - changed.sum())}

    def _kept_digests(self, conn, table: str, digests: "StateDigests") -> pd.DataFrame | None:
        """The copy's keys and digests for `table` when its row count and digest checksum are the table's;
        else None (the table is read). Reading a million digests through the driver costs ~3 s a table;
        the checksum, one aggregate in the database, a fraction of that."""
        kept = digests.previous(table)
        if kept is None:
            return None
        stored = conn.execute(sa.text(f"SELECT COUNT(*), SUM(row_digest % {DIGEST_CHECK_MODULUS}), "
                                      f"COUNT(row_digest) FROM {table}")).first()
        mine = digest_checksum(kept["row_digest"].to_numpy(dtype=np.int64))
        if (int(stored[0]), int(stored[1] or 0), int(stored[2])) != (len(kept), mine, len(kept)):
            log.info("load: %s: the kept digests (%d rows) are not the table's (%d rows); reading the table",
                     table, len(kept), int(stored[0]))
            return None
        return kept.assign(row_digest=kept["row_digest"].astype("Int64"))

    def _keys_table(self, conn, keys: list[str], frame: pd.DataFrame) -> str:
        """A temporary table holding `frame`'s keys, for deletes and lookups by key in one statement."""
        name = "slowburn_keys"
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} ({', '.join(f'{k} TEXT' for k in keys)})")
        self._insert(conn, name, frame[keys].astype("string"))
        return name

    def _delete_keys(self, conn, table: str, keys: list[str], frame: pd.DataFrame) -> None:
        tmp = self._keys_table(conn, keys, frame)
        target = keys[0] if len(keys) == 1 else f"({', '.join(keys)})"
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE {target} IN (SELECT {', '.join(keys)} FROM {tmp})")

    def _record_queue_before_images(self, conn, run_id, table, touched, absent, columns) -> None:
        """Keep each queue row as it was before this run changed it, so the run can be re-routed exactly.

        A re-run of the newest night routes against the queues before that night: the state tables
        minus the night's changes. Only the first load of a run records a key's before-image, so a
        re-run's load, which starts from state that already holds the run, does not overwrite it.
        """
        if not len(touched):
            return
        have = pd.read_sql(sa.text("SELECT golden_id FROM queue_history WHERE run_id = :r AND queue = :q AND "
                                   "change IS NOT NULL"), conn, params={"r": run_id, "q": table})["golden_id"]
        touched = touched[~is_in(touched["golden_id"], have)]
        absent = absent[~is_in(absent["golden_id"], have)]
        history_cols = [c for c in columns["queue_history"] if c not in ("run_id", "queue", "change")]
        cols = [c for c in history_cols if c in columns[table]]
        before = touched[~is_in(touched["golden_id"], absent["golden_id"])]
        if len(before):
            tmp = self._keys_table(conn, ["golden_id"], before)
            rows = pd.read_sql(sa.text(f"SELECT {', '.join(cols)} FROM {table} WHERE golden_id IN "
                                       f"(SELECT golden_id FROM {tmp})"), conn)
            self._insert(conn, "queue_history", rows.assign(run_id=run_id, queue=table, change="before"))
        if len(absent):
            self._insert(conn, "queue_history", absent[["golden_id"]].assign(run_id=run_id, queue=table,
                                                                              change="absent"))

    def _record_score_history(self, conn, run_id, frame, at, old, written, rerun, columns) -> None:
        """score_history gains a row for a lead only when its score or tier differs from its last one.
        at: each frame row's row in `old` (the stored golden_id, score, tier), -1 for a new lead."""
        if rerun:  # the state already holds this run: compare with the history before it
            prev = pd.read_sql(sa.text(sql_text("scores_at.sql").format(cmp="<")), conn, params={"run_id": run_id})
            at = positions(frame["golden_id"], prev["golden_id"])
            old, written = prev, np.ones(len(frame), dtype=bool)
        pos = np.flatnonzero(written)
        was = at[pos]
        known = was >= 0
        old_score = np.full(len(pos), np.nan)
        old_score[known] = pd.to_numeric(old["score"]).to_numpy(dtype=float, na_value=np.nan)[was[known]]
        old_tier = np.full(len(pos), None, dtype=object)
        old_tier[known] = old["tier"].to_numpy(dtype=object)[was[known]]
        score = pd.to_numeric(frame["score"]).to_numpy(dtype=float, na_value=np.nan)[pos]
        tier = frame["tier"].to_numpy(dtype=object)[pos]
        # A missing old score or tier (a new lead) counts as moved, as does any difference.
        moved = ~(np.round(score) == np.round(old_score)) | (tier != old_tier).astype(bool)
        rows = frame.iloc[pos[moved]].assign(run_id=run_id)
        self._insert(conn, "score_history", self._stored("score_history", rows, columns, warn=False))

    def _columns(self) -> dict[str, list[str]]:
        insp = sa.inspect(self.engine)
        return {t: [c["name"] for c in insp.get_columns(t)] for t in RUN_TABLES + STATE_TABLES + ("run_ledger",)}

    def _insert(self, conn, table: str, frame: pd.DataFrame, chunk_rows: int = 100_000,
                upsert_keys: list[str] | None = None) -> None:
        """Insert in chunks: Python row tuples cost ~10x the frame's memory, so never build them all.
        With upsert_keys (SQLite), a row whose key exists replaces that row's other columns."""
        placeholders = ", ".join("?" for _ in frame.columns)
        sql = f"INSERT INTO {table} ({', '.join(frame.columns)}) VALUES ({placeholders})"
        if upsert_keys:
            updates = ", ".join(f"{c} = excluded.{c}" for c in frame.columns if c not in upsert_keys)
            sql += f" ON CONFLICT ({', '.join(upsert_keys)}) DO UPDATE SET {updates}"
        for start in range(0, len(frame), chunk_rows):
            chunk = frame.iloc[start:start + chunk_rows]
            if self.dialect == "postgresql":
                _copy_postgres(conn, table, chunk)
            else:
                conn.exec_driver_sql(sql, _python_rows(chunk))

    def read(self, sql: str, **params) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(sa.text(sql), conn, params=params)

    def read_typed(self, sql: str, datetime_columns=(), bool_columns=(), **params) -> pd.DataFrame:
        """A query's rows with timestamps and booleans typed back (SQLite stores them as text and 0/1)."""
        frame = self.read(sql, **params)
        for col in datetime_columns:
            if col in frame:
                # The contract's unit (ns): mixing units makes pandas fall back to object on concat.
                frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
        for col in bool_columns:
            if col in frame:
                frame[col] = frame[col].astype("boolean")
        return frame

    def scores_at(self, run_id: str) -> pd.DataFrame:
        """golden_id, score, tier of every lead scored by `run_id`, as of that run (from score_history)."""
        return self.read(sql_text("scores_at.sql").format(cmp="<="), run_id=run_id)

    def read_state(self, table: str, columns: list[str] | None = None, where: str = "", **params) -> pd.DataFrame:
        """A table's rows typed as the schema declares them (timestamps, booleans), without row_digest."""
        from slowburn import schema

        declared = schema.metadata.tables[table].columns
        names = columns or [c.name for c in declared if c.name != "row_digest"]
        return self.read_typed(f"SELECT {', '.join(names)} FROM {table}" + (f" WHERE {where}" if where else ""),
                               datetime_columns=[c.name for c in declared if c.type is schema.TS],
                               bool_columns=[c.name for c in declared if c.type is schema.BOOL], **params)

    def _read_for_golden_ids(self, sql: str, golden_ids, **params) -> pd.DataFrame:
        """`sql` joined to a temporary table of these golden ids ({keys}): a few thousand of a million rows,
        found by key, without an IN list of thousands of parameters."""
        keys = pd.DataFrame({"golden_id": pd.Series(golden_ids, dtype="string").drop_duplicates()})
        with self.engine.begin() as conn:
            tmp = self._keys_table(conn, ["golden_id"], keys)
            found = pd.read_sql(sa.text(sql.format(keys=tmp)), conn, params=params)
            conn.exec_driver_sql(f"DROP TABLE {tmp}")
        return found

    def reasons_of(self, golden_ids) -> pd.DataFrame:
        """The stored reasons (lead_reasons) of these golden leads, looked up by key: a few thousand of a
        million rows of a kilobyte each. Columns: golden_id, reasons, reasons_score, reasons_at."""
        found = self._read_for_golden_ids("SELECT r.golden_id, r.reasons, r.reasons_score, r.reasons_at FROM "
                                          "lead_reasons r JOIN {keys} k ON k.golden_id = r.golden_id", golden_ids)
        return found.astype({"golden_id": "string", "reasons": "string"}).assign(
            reasons_at=lambda f: pd.to_datetime(f["reasons_at"], utc=True, format="ISO8601"))

    def scores_before(self, run_id: str, golden_ids) -> pd.Series:
        """Each of these leads' score as the last run before `run_id` left it (score_history keeps a row
        whenever it moved), looked up by key; NaN for a lead not scored before."""
        wanted = pd.Series(golden_ids, dtype="string").reset_index(drop=True)
        found = self._read_for_golden_ids("SELECT h.golden_id, h.score FROM score_history h JOIN {keys} k ON "
                                          "k.golden_id = h.golden_id WHERE h.run_id < :run_id ORDER BY h.run_id",
                                          wanted, run_id=run_id)
        latest = found.drop_duplicates("golden_id", keep="last")
        row = positions(wanted, latest["golden_id"])
        score = pd.to_numeric(latest["score"]).to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(np.where(row >= 0, score[np.maximum(row, 0)] if len(score) else np.nan, np.nan))

    def flags_at(self, run_id: str, columns: str = "*") -> pd.DataFrame:
        """lead_flags as a run left them: the flags open after it and those it closed, status as of then.

        lead_flags is a state table of flag episodes; a closed episode keeps the run that closed it.
        """
        frame = self.read(f"SELECT {columns}, first_run_id AS at_first_run, run_id AS at_run, status AS at_status "
                          f"FROM lead_flags WHERE {FLAGS_SEEN_BY_RUN}", run_id=run_id)
        status = flag_status_at(frame["at_first_run"], frame["at_run"], frame["at_status"], run_id)
        frame = frame.drop(columns=["at_first_run", "at_run", "at_status"])
        if "status" in frame:
            frame["status"] = status
        return frame[status.notna().to_numpy(dtype=bool)].reset_index(drop=True)

    def read_table(self, table: str, run_id: str | None = None) -> pd.DataFrame:
        if run_id is None:
            return self.read(f"SELECT * FROM {table}")
        return self.read(f"SELECT * FROM {table} WHERE run_id = :run_id", run_id=run_id)


def as_utc(value) -> pd.Timestamp:
    """A timestamp in UTC; one without a zone is read as UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# lead_flags rows a run saw: raised by then, and open, or closed by that run or a later one.
FLAGS_SEEN_BY_RUN = "first_run_id <= :run_id AND (COALESCE(status, 'open') = 'open' OR run_id >= :run_id)"


def flag_status_at(first_run_id: pd.Series, run_id: pd.Series, status: pd.Series, at: str) -> pd.Series:
    """Each flag episode's status as of run `at`: 'open', 'closed' (closed by that run) or null (not seen)."""
    closed_now = status.fillna("open") == "closed"
    out = pd.Series(pd.NA, index=status.index, dtype="string")
    raised = (first_run_id <= at).to_numpy(dtype=bool)
    out[raised & (~closed_now | (run_id > at)).to_numpy(dtype=bool)] = "open"
    out[raised & (closed_now & (run_id == at)).to_numpy(dtype=bool)] = "closed"
    return out


def row_digest(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A signed 64-bit hash per row of `columns`, stable across nights for equal values.

    Values are brought to one representation first (text, timestamps at whole seconds, numbers as
    floats rounded to FLOAT_DIGITS), so the same lead read back from Parquet or the warehouse another
    night, with another dtype for an all-null column, hashes the same. DuckDB's row hash is 3x faster
    than pandas' on a million text-heavy rows; a DuckDB upgrade that changed it would make one night
    rewrite every row once, nothing worse.
    """
    import duckdb
    import pyarrow as pa

    if not columns or not len(frame):
        return np.zeros(len(frame), dtype=np.int64)
    canon = {}
    for i, name in enumerate(columns):
        s = frame[name]
        if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
            s = pd.to_datetime(s, utc=True).dt.floor("s").astype("datetime64[ns, UTC]")
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            s = pd.to_numeric(s).astype("Float64").round(FLOAT_DIGITS)
        else:
            s = s.astype("string")
        canon[f"c{i}"] = s.reset_index(drop=True)
    canonical = pa.Table.from_pandas(pd.DataFrame(canon), preserve_index=False)  # noqa: F841 - read by DuckDB
    with duckdb.connect() as con:
        con.execute("SET threads TO 2")
        hashed = con.execute(f"SELECT hash({', '.join(canon)}) AS h FROM canonical").fetchnumpy()["h"]
    return np.asarray(hashed, dtype=np.uint64).view(np.int64)


DIGEST_CHECK_MODULUS = 1_000_003  # a prime: sums of a million residues fit in 64 bits in every database


def digest_checksum(digests: np.ndarray) -> int:
    """Sum of the digests' residues as SQLite and PostgreSQL compute `row_digest % m` (sign of the dividend)."""
    return int(np.fmod(np.asarray(digests, dtype=np.int64), DIGEST_CHECK_MODULUS).sum())


class StateDigests:
    """Where a load finds the state tables' keys and digests as the previous load left them, and keeps
    tonight's: `previous(table)` returns a frame (keys, row_digest[, score, tier]) or None, `keep(table,
    frame)` stores tonight's. The load trusts a copy only when its checksum is the table's."""

    def __init__(self, previous: Callable[[str], pd.DataFrame | None], keep: Callable[[str, pd.DataFrame], None]):
        self.previous, self.keep = previous, keep


def _check_keys(table: str, frame: pd.DataFrame, keys: list[str]) -> None:
    """A state frame has one row per key: a null or repeated key is a broken step, named with an example."""
    null = frame[keys].isna().any(axis=1)
    if null.any():
        raise ContractError(f"{table}: {int(null.sum())} row(s) have no {'/'.join(keys)}, e.g. "
                            f"{frame.loc[null].head(1).to_dict('records')}; the step that wrote {table} "
                            "broke its contract: re-run it, and report the row if it happens again")
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        raise ContractError(f"{table}: {int(dup.sum())} row(s) share a {'/'.join(keys)}, e.g. "
                            f"{frame.loc[dup, keys].head(2).to_dict('records')}; a state table holds one row "
                            f"per key: re-run the step that wrote {table}, and report it if it happens again")


def _sqlite_pragmas(dbapi_conn, _record):
    """WAL once per database (it is persistent). Switching to it needs the write lock and SQLite does not
    wait for that with its busy timeout, so steps starting together on a new warehouse retry it."""
    import sqlite3
    import time

    cur = dbapi_conn.cursor()
    deadline = time.monotonic() + 60
    while cur.execute("PRAGMA journal_mode").fetchone()[0].lower() not in ("wal", "memory"):
        try:
            if cur.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal" and time.monotonic() > deadline:
                break  # e.g. a read-only or network file system: run without WAL rather than not at all
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _python_rows(frame: pd.DataFrame) -> list[tuple]:
    """Rows as tuples of plain Python values: None for nulls, ISO-8601 UTC text for timestamps."""
    arrays = []
    for name in frame.columns:
        s = frame[name]
        if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
            naive = s.dt.tz_convert("UTC").dt.tz_localize(None) if isinstance(s.dtype, pd.DatetimeTZDtype) else s
            text = np.datetime_as_string(naive.to_numpy().astype("datetime64[s]"), unit="s").astype(object)
            text[naive.isna().to_numpy()] = None
            arrays.append(text)
        elif isinstance(s.array, pd.arrays.ArrowStringArray):
            arrays.append(pa.array(s.array).to_pylist())  # None for nulls; a third faster than via object
        else:
            if pd.api.types.is_bool_dtype(s):
                s = s.astype("Int64")
            # tolist() yields Python scalars; numpy scalars would be stored by sqlite3 as blobs.
            arrays.append(s.astype("object").where(s.notna(), None).tolist())
    return list(zip(*arrays))


def _copy_postgres(conn, table: str, frame: pd.DataFrame) -> None:
    """COPY is an order of magnitude faster than INSERT for a nightly load of a million rows."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False, na_rep="")
    if "\x00" in buf.getvalue():  # PostgreSQL text cannot hold NUL; name where it is instead of COPY's error
        bad = [c for c in frame.columns if frame[c].astype("string").str.contains("\x00", regex=False).any()]
        raise ValueError(f"{table}: column(s) {bad} hold NUL bytes, which PostgreSQL cannot store; the extract "
                         "step removes them from source values, so they came from elsewhere")
    buf.seek(0)
    raw = conn.connection.dbapi_connection
    with raw.cursor() as cur:
        cur.copy_expert(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)", buf)
