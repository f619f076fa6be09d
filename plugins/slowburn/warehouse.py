"""The warehouse: SQLAlchemy engine, DDL from include/sql, and transactional, idempotent run loads."""
from __future__ import annotations

import io
import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import sqlalchemy as sa

from slowburn.db import create_engine

log = logging.getLogger(__name__)

# Run tables keep history: a run's load replaces only its own rows.
RUN_TABLES = ("landed_leads", "touches", "quarantine", "lead_scores", "lead_flags", "owners", "outcomes",
              "source_watermarks")
# State tables hold the current picture (every known lead, its links, golden record and queue) and
# are replaced whole by each run, in the same transaction.
STATE_TABLES = ("current_leads", "lead_links", "golden_leads", "sales_queue", "nurture_queue")

_DIALECT_TYPES = {
    "sqlite": {"ts": "TEXT", "bool": "INTEGER", "float": "REAL"},
    "postgresql": {"ts": "TIMESTAMP WITH TIME ZONE", "bool": "BOOLEAN", "float": "DOUBLE PRECISION"},
}


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


def redacted(url: str | sa.URL) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


class Warehouse:
    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        if self.dialect not in _DIALECT_TYPES:
            raise ValueError(f"warehouse dialect {self.dialect!r} is not supported; use sqlite or postgresql")

    def __repr__(self) -> str:
        return f"Warehouse({redacted(self.url)})"

    def ensure_schema(self) -> None:
        """Create missing tables, and add columns that a newer schema.sql declares to existing ones.

        CREATE TABLE IF NOT EXISTS alone would leave an upgraded warehouse without new columns, and the
        loads would then drop those values. Added columns are nullable: old rows have no value for them.
        """
        ddl = sql_text("schema.sql").format(**_DIALECT_TYPES[self.dialect])
        statements = [s.strip() for s in _strip_comments(ddl).split(";") if s.strip()]
        with self.engine.begin() as conn:
            for stmt in statements:
                conn.exec_driver_sql(stmt)
            insp = sa.inspect(conn)
            for table, declared in _declared_columns(statements).items():
                present = {c["name"] for c in insp.get_columns(table)}
                for name, col_type in declared:
                    if name not in present:
                        log.warning("warehouse: adding column %s.%s %s", table, name, col_type)
                        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {col_type}")

    def previous_watermarks(self, run_id: str, logical_date: pd.Timestamp) -> dict[str, str]:
        self.ensure_schema()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(sql_text("previous_watermarks.sql")),
                                {"run_id": run_id, "logical_date": self._ts_param(logical_date)}).all()
        return {name: value for name, value in rows}

    def _ts_param(self, ts: pd.Timestamp):
        ts = pd.Timestamp(ts).tz_convert("UTC") if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts).tz_localize("UTC")
        return ts.strftime("%Y-%m-%dT%H:%M:%S") if self.dialect == "sqlite" else ts.to_pydatetime()

    def replace_run(self, run_id: str, frames: dict[str, pd.DataFrame | Callable[[], pd.DataFrame]],
                    ledger: dict) -> None:
        """Replace everything `run_id` wrote with `frames` and its ledger row, all or nothing.

        A frame may be given as a function that reads it: tables are then read, inserted and freed one
        at a time, so the load holds one table in memory, not the whole run.
        """
        self.ensure_schema()
        columns = self._columns()
        unknown = set(frames) - set(RUN_TABLES) - set(STATE_TABLES)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not warehouse tables")
        with self.engine.begin() as conn:
            for table in RUN_TABLES:
                conn.execute(sa.text(f"DELETE FROM {table} WHERE run_id = :run_id"), {"run_id": run_id})
            for table in STATE_TABLES:
                if table in frames:
                    conn.execute(sa.text(f"DELETE FROM {table}"))
            conn.execute(sa.text("DELETE FROM run_ledger WHERE run_id = :run_id"), {"run_id": run_id})
            for table, source in frames.items():
                frame = source() if callable(source) else source
                if table in RUN_TABLES or "run_id" not in frame.columns:
                    frame = frame.assign(run_id=run_id)
                cols = [c for c in columns[table] if c in frame.columns]
                dropped = sorted(set(frame.columns) - set(columns[table]))
                if dropped:
                    log.warning("load: %s has no column(s) %s; their values are not stored", table, dropped)
                self._insert(conn, table, frame[cols])
                log.info("load: %s <- %d rows", table, len(frame))
                del frame
            ledger_frame = pd.DataFrame([{**ledger, "run_id": run_id}])
            self._insert(conn, "run_ledger", ledger_frame[[c for c in columns["run_ledger"] if c in ledger_frame]])

    def _columns(self) -> dict[str, list[str]]:
        insp = sa.inspect(self.engine)
        return {t: [c["name"] for c in insp.get_columns(t)] for t in RUN_TABLES + STATE_TABLES + ("run_ledger",)}

    def _insert(self, conn, table: str, frame: pd.DataFrame, chunk_rows: int = 100_000) -> None:
        """Insert in chunks: Python row tuples cost ~10x the frame's memory, so never build them all."""
        placeholders = ", ".join("?" for _ in frame.columns)
        sql = f"INSERT INTO {table} ({', '.join(frame.columns)}) VALUES ({placeholders})"
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

    def read_table(self, table: str, run_id: str | None = None) -> pd.DataFrame:
        if run_id is None:
            return self.read(f"SELECT * FROM {table}")
        return self.read(f"SELECT * FROM {table} WHERE run_id = :run_id", run_id=run_id)


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _declared_columns(statements: list[str]) -> dict[str, list[tuple[str, str]]]:
    """(column, type) per table from our own CREATE TABLE statements (one level of parentheses)."""
    out = {}
    for stmt in statements:
        head = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\(", stmt, flags=re.IGNORECASE)
        if not head:
            continue
        body = stmt[head.end():stmt.rfind(")")]
        parts, depth, current = [], 0, ""
        for ch in body:
            depth += ch == "("
            depth -= ch == ")"
            if ch == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += ch
        parts.append(current)
        columns = []
        for part in (p.strip() for p in parts):
            words = part.split()
            if len(words) < 2 or words[0].upper() in ("PRIMARY", "UNIQUE", "FOREIGN", "CONSTRAINT", "CHECK"):
                continue
            type_words = []
            for word in words[1:]:
                if word.upper() in ("NOT", "NULL", "PRIMARY", "DEFAULT", "REFERENCES", "UNIQUE"):
                    break
                type_words.append(word)
            columns.append((words[0], " ".join(type_words)))
        out[head.group(1)] = columns
    return out


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


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
    buf.seek(0)
    raw = conn.connection.dbapi_connection
    with raw.cursor() as cur:
        cur.copy_expert(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)", buf)
