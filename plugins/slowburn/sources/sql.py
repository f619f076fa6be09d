"""SQL sources: any SQLAlchemy URL, pulled incrementally on an updated-at column."""
from __future__ import annotations

import logging
from urllib.parse import quote, quote_plus

import pandas as pd
import sqlalchemy as sa

from slowburn.contracts import ContractError
from slowburn.db import create_engine

log = logging.getLogger(__name__)


def read_sql_source(url: str, *, table: str | None = None, query: str | None = None,
                    watermark: str | None = None, since=None, chunk_rows: int = 200_000,
                    source: str | None = None) -> pd.DataFrame:
    """Rows of a table or query, only those with watermark > since when both are given.

    The comparison runs in the source database so an incremental pull reads only new rows;
    `since` is bound as given (a number for a numeric watermark, text for a timestamp).
    `table` may be schema-qualified (`myschema.leads`). Any failure to connect or to read is a
    ContractError that names the source, the table or query and the URL, never its password.
    """
    what = f"table {table!r}" if table else f"query {_shorten(query)!r}"
    where = f"source {source!r}: " if source else ""
    shown_url, password = _url_for_messages(url)
    error = None
    engine = None
    try:
        engine = create_engine(url)
        stmt = sa.select(sa.literal_column("*")).select_from(_selectable(table, query))
        params = {}
        if watermark and since is not None:
            stmt = stmt.where(sa.column(watermark) > sa.bindparam("since"))
            params["since"] = since
        with engine.connect() as conn:
            chunks = list(pd.read_sql(stmt, conn, params=params, chunksize=chunk_rows))
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError, ImportError) as exc:
        # pandas wraps SQLAlchemy's errors in its own DatabaseError; connection errors are SQLAlchemy's;
        # ImportError: the URL names a driver that is not installed.
        error = _scrub(_reason(exc), password)
    finally:
        if engine is not None:
            engine.dispose()
    if error is not None:
        # Raised outside the handler so that no chained exception carries the URL or the password.
        raise ContractError(f"{where}reading {what} from {shown_url} failed: {error}")
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    log.info("read %d rows from %s", len(frame), table or "query")
    return frame


def _selectable(table: str | None, query: str | None):
    if table:
        schema, _, name = table.rpartition(".")
        return sa.table(name, schema=schema or None)
    return sa.text(query).columns().subquery("src")


def _shorten(text: str | None, limit: int = 200) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _url_for_messages(url) -> tuple[str, str | None]:
    """The URL as it may be shown (password hidden) and the password to scrub from any message."""
    try:
        parsed = sa.engine.make_url(url)
    except Exception:  # noqa: BLE001 - create_engine reports why; here only keep the text out of messages
        return "a URL that SQLAlchemy cannot parse (not shown: it may hold a password)", str(url)
    return parsed.render_as_string(hide_password=True), parsed.password


def _reason(exc: BaseException) -> str:
    """The database's own message: the DBAPI error under SQLAlchemy's and pandas' wrappers."""
    seen = exc
    while seen is not None:
        if isinstance(seen, sa.exc.DBAPIError) and seen.orig is not None:
            return " ".join(str(seen.orig).split())
        if isinstance(seen, sa.exc.SQLAlchemyError):
            return " ".join(str(seen).split())
        seen = seen.__cause__ or seen.__context__
    return " ".join(str(exc).split())


def _scrub(text: str, password: str | None) -> str:
    if password:
        for form in {str(password), quote_plus(str(password)), quote(str(password), safe="")}:
            text = text.replace(form, "***")
    return text
