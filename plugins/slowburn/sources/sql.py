"""SQL sources: any SQLAlchemy URL, pulled incrementally on an updated-at column."""
from __future__ import annotations

import logging

import pandas as pd
import sqlalchemy as sa

from slowburn.contracts import ContractError

log = logging.getLogger(__name__)


def read_sql_source(url: str, *, table: str | None = None, query: str | None = None,
                    watermark: str | None = None, since=None, chunk_rows: int = 200_000) -> pd.DataFrame:
    """Rows of a table or query, only those with watermark > since when both are given.

    The comparison runs in the source database so an incremental pull reads only new rows.
    """
    engine = sa.create_engine(url)
    try:
        source = sa.table(table) if table else sa.text(query).columns().subquery("src")
        stmt = sa.select(sa.literal_column("*")).select_from(source)
        params = {}
        if watermark and since is not None:
            stmt = stmt.where(sa.column(watermark) > sa.bindparam("since"))
            params["since"] = since
        with engine.connect() as conn:
            try:
                chunks = list(pd.read_sql(stmt, conn, params=params, chunksize=chunk_rows))
            except sa.exc.SQLAlchemyError as exc:
                raise ContractError(f"reading {table or 'query'} from {engine.url.render_as_string(hide_password=True)}"
                                    f" failed: {exc.orig if hasattr(exc, 'orig') else exc}") from None
        frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
        log.info("read %d rows from %s", len(frame), table or "query")
        return frame
    finally:
        engine.dispose()
