"""Alembic migrations of the warehouse (versions/), configured in code: no alembic.ini at runtime.

Revision 0001 is the schema as include/sql/schema.sql made it; it also adopts a warehouse that
schema.sql created (no version row yet). Warehouse.ensure_schema and `slowburn db upgrade` run them.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

# Not alembic_version: a warehouse sharing a database with Airflow's metadata must not read Airflow's revision.
VERSION_TABLE = "slowburn_alembic_version"


def config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent))
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision: reading the scripts costs milliseconds, so once per process."""
    return ScriptDirectory.from_config(config()).get_current_head()


def current(connection) -> str | None:
    """The warehouse's revision; None for an empty warehouse or one made by schema.sql.

    Read directly: alembic's MigrationContext logs two INFO lines per call, and every step calls this.
    """
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(connection, revision: str = "head") -> None:
    """Run the migrations on `connection`, inside the caller's transaction (the caller commits)."""
    command.upgrade(config(connection), revision)
