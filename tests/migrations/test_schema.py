"""slowburn.schema's MetaData, the migrations and the old schema.sql describe one warehouse."""
from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from legacy_warehouse import create_legacy_warehouse, describe

from slowburn import migrations
from slowburn.db import create_engine
from slowburn.schema import metadata
from slowburn.warehouse import Warehouse


def _upgrade(url: str, revision: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        migrations.upgrade(conn, revision)
    engine.dispose()


def test_revision_0001_is_what_schema_sql_made(new_url):
    """Column for column (names, types per dialect, nullability, order), primary keys and indexes."""
    legacy, baseline = new_url(), new_url()
    create_legacy_warehouse(legacy)
    _upgrade(baseline, "0001")
    old = describe(legacy)
    assert len(old) == 18 and old["lead_scores"]["primary_key"] == ["run_id", "golden_id"]
    assert describe(baseline) == old


def test_the_metadata_is_what_the_migrations_build(new_url):
    """A fresh warehouse upgraded to head, an old one upgraded to head and metadata.create_all agree, comments
    included (PostgreSQL); alembic's autogenerate finds nothing to write."""
    fresh, adopted, modelled = new_url(), new_url(), new_url()
    Warehouse(fresh).ensure_schema()
    create_legacy_warehouse(adopted)
    Warehouse(adopted).ensure_schema()
    engine = create_engine(modelled)
    metadata.create_all(engine)
    expected = describe(modelled, comments=True)
    assert describe(fresh, comments=True) == expected
    assert describe(adopted, comments=True) == expected
    with create_engine(fresh).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "version_table": migrations.VERSION_TABLE})
        diff = [d for d in _flat(compare_metadata(context, metadata)) if not _implied_not_null(d)]
    assert diff == []
    if engine.dialect.name == "postgresql":
        comments = {column[0]: column[3] for column in describe(adopted, comments=True)["golden_leads"]["columns"]}
        assert comments["provenance"].startswith("lineage (slowburn.dedupe.survivorship)")


def test_stored_types_stay_what_the_loaders_write(new_url):
    """SQLite keeps ISO-8601 text, 0/1 and REAL; PostgreSQL timestamptz, boolean and double precision."""
    url = new_url()
    Warehouse(url).ensure_schema()
    columns = {name: type_ for name, type_, _ in describe(url)["lead_scores"]["columns"]}
    queue = {name: type_ for name, type_, _ in describe(url)["sales_queue"]["columns"]}
    if url.startswith("sqlite"):
        assert (columns["scored_at"], queue["owner_kept"], columns["probability"]) == ("TEXT", "INTEGER", "REAL")
    else:
        assert (columns["scored_at"], queue["owner_kept"], columns["probability"]) == (
            "TIMESTAMP WITH TIME ZONE", "BOOLEAN", "DOUBLE PRECISION")
    assert columns["row_digest"] == "BIGINT"


def test_contract_tables_follow_the_contracts():
    """A contract column added to contracts.py appears in the tables that mirror the contract."""
    from slowburn import contracts
    tables = metadata.tables
    assert [c.name for c in contracts.LEADS.columns] == [c for c in tables["landed_leads"].columns.keys()
                                                          if c in contracts.LEADS.names]
    assert set(contracts.NORMALISED_LEADS.names) <= set(tables["current_leads"].columns.keys())
    for table, contract in (("touches", contracts.TOUCHES), ("owners", contracts.OWNERS),
                            ("outcomes", contracts.OUTCOMES_CONTRACT)):
        assert set(contract.names) <= set(tables[table].columns.keys()), table
    assert isinstance(tables["current_leads"].c.created_at.type.dialect_impl(sa.create_engine("sqlite://").dialect),
                      sa.Text)


def _flat(diff):
    for item in diff:
        yield from (item if isinstance(item, list) else [item])


def _implied_not_null(d) -> bool:
    """PostgreSQL makes a primary key column NOT NULL whatever the DDL says; schema.sql left three TEXT
    PRIMARY KEYs without NOT NULL (nullable on SQLite), and the model keeps that."""
    return d[0] == "modify_nullable" and metadata.tables[d[2]].c[d[3]].primary_key and d[5] is False
