"""Warehouses made the old way: include/sql/schema.sql as Warehouse.ensure_schema ran it before migrations.

Not conftest.py: tests import tests/conftest.py as `conftest`, which a second conftest.py would shadow.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from slowburn.db import create_engine

LEGACY_SCHEMA = Path(__file__).with_name("legacy_schema.sql")  # include/sql/schema.sql, frozen at revision 0001
LEGACY_TYPES = {"sqlite": {"ts": "TEXT", "bool": "INTEGER", "float": "REAL"},
                "postgresql": {"ts": "TIMESTAMP WITH TIME ZONE", "bool": "BOOLEAN", "float": "DOUBLE PRECISION"}}


def create_legacy_warehouse(url: str) -> None:
    engine = create_engine(url)
    ddl = LEGACY_SCHEMA.read_text(encoding="utf-8").format(**LEGACY_TYPES[engine.dialect.name])
    ddl = "\n".join(line for line in ddl.splitlines() if not line.lstrip().startswith("--"))
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
    engine.dispose()


def describe(url: str, *, comments: bool = False) -> dict:
    """Every slowburn table as the database reports it: columns in order (name, type, nullable), primary key
    columns and indexes; with `comments`, the table's and columns' comments too."""
    from slowburn.migrations import VERSION_TABLE

    engine = create_engine(url)
    insp = sa.inspect(engine)
    out = {}
    comments = comments and engine.dialect.supports_comments
    for table in sorted(set(insp.get_table_names()) - {VERSION_TABLE}):
        columns = [(c["name"], c["type"].compile(dialect=engine.dialect), c["nullable"])
                   + ((c.get("comment"),) if comments else ()) for c in insp.get_columns(table)]
        out[table] = {"columns": columns, "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
                      "indexes": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                                        for ix in insp.get_indexes(table))}
        if comments:
            out[table]["comment"] = insp.get_table_comment(table).get("text")
    engine.dispose()
    return out
