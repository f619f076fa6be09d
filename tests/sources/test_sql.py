"""slowburn.sources.sql and extract_source against real databases: SQLite files and the local PostgreSQL."""
from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from slowburn.contracts import ContractError
from slowburn.sources import extract_source, parse_sources
from slowburn.sources.sql import read_sql_source

# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project ships psycopg2.
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
PG_SECRET = "Sup3rS3cretPw"
PG_URL_WITH_PASSWORD = f"postgresql+psycopg2://postgres:{PG_SECRET}@127.0.0.1:5432/test"

LEAD_ROWS = [
    {"Id": "A", "Email": "a@x.com", "LastModifiedDate": "2026-11-01 10:00:00"},
    {"Id": "B", "Email": "b@x.com", "LastModifiedDate": "2026-11-02 10:00:00"},
    {"Id": "C", "Email": "c@x.com", "LastModifiedDate": "2026-11-03 10:00:00"},
]


@pytest.fixture
def crm_db(tmp_path) -> str:
    """A SQLite file with a Lead table whose watermark is text, as SQLite stores it."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    lead = sa.Table("Lead", meta, sa.Column("Id", sa.String, primary_key=True), sa.Column("Email", sa.String),
                    sa.Column("LastModifiedDate", sa.String))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(lead.insert(), LEAD_ROWS)
    engine.dispose()
    return url


def _crm_source(url: str, **changes):
    item = {"name": "crm", "kind": "sql", "entity": "leads", "url": url, "table": "Lead",
            "watermark": "LastModifiedDate", "constants": {"source_system": "salesforce"},
            "columns": {"source_id": "Id", "email": "Email", "updated_at": "LastModifiedDate"}}
    item.update(changes)
    item = {k: v for k, v in item.items() if v is not None}
    (cfg,) = parse_sources({"sources": [item]}, Path("."))
    return cfg


# ------------------------------------------------------------------------------------------------ SQLite

def test_full_pull(crm_db):
    df = read_sql_source(crm_db, table="Lead", chunk_rows=2)  # two chunks
    assert df.to_dict("records") == LEAD_ROWS


def test_incremental_pull_returns_strictly_newer_rows(crm_db):
    df = read_sql_source(crm_db, table="Lead", watermark="LastModifiedDate", since="2026-11-02 10:00:00")
    assert df["Id"].tolist() == ["C"]
    df = read_sql_source(crm_db, table="Lead", watermark="LastModifiedDate", since="2026-11-01 23:59:59")
    assert df["Id"].tolist() == ["B", "C"]


def test_incremental_pull_with_nothing_new(crm_db):
    df = read_sql_source(crm_db, table="Lead", watermark="LastModifiedDate", since="2026-11-03 10:00:00")
    assert len(df) == 0


def test_since_is_ignored_without_watermark(crm_db):
    df = read_sql_source(crm_db, table="Lead", since="2026-11-03 10:00:00")
    assert df["Id"].tolist() == ["A", "B", "C"]


def test_query_instead_of_table(crm_db):
    query = "SELECT Id, Email, LastModifiedDate FROM Lead WHERE Email <> 'b@x.com'"
    df = read_sql_source(crm_db, query=query)
    assert df["Id"].tolist() == ["A", "C"]
    df = read_sql_source(crm_db, query=query, watermark="LastModifiedDate", since="2026-11-01 10:00:00")
    assert df["Id"].tolist() == ["C"]


def test_extract_maps_rows_and_returns_high_watermark_in_source_text_form(crm_db):
    got = extract_source(_crm_source(crm_db))
    rows = got.rows
    assert rows["source_id"].tolist() == ["A", "B", "C"]
    assert rows["email"].tolist() == ["a@x.com", "b@x.com", "c@x.com"]
    assert rows["source_system"].tolist() == ["salesforce"] * 3
    assert rows["updated_at"].tolist() == ["2026-11-01 10:00:00", "2026-11-02 10:00:00", "2026-11-03 10:00:00"]
    assert rows["row_number"].tolist() == [1, 2, 3]
    # the max as the database stores it (space, no offset), not re-formatted to ISO
    assert got.high_watermark == "2026-11-03 10:00:00"


def test_extract_incremental_round_trip(crm_db):
    cfg = _crm_source(crm_db)
    first = extract_source(cfg)
    engine = sa.create_engine(crm_db)
    with engine.begin() as conn:
        conn.execute(sa.text('INSERT INTO "Lead" VALUES (\'D\', \'d@x.com\', \'2026-11-04 08:00:00\'), '
                             '(\'E\', \'e@x.com\', \'2026-11-03 10:00:00\')'))
        conn.execute(sa.text('UPDATE "Lead" SET "Email" = \'a2@x.com\', "LastModifiedDate" = '
                             '\'2026-11-05 00:00:00\' WHERE "Id" = \'A\''))
    engine.dispose()
    second = extract_source(cfg, since=first.high_watermark)
    # E has the same stamp as the old high watermark, so it is not newer
    assert second.rows["source_id"].tolist() == ["A", "D"]
    assert second.rows["email"].tolist() == ["a2@x.com", "d@x.com"]
    assert second.high_watermark == "2026-11-05 00:00:00"
    third = extract_source(cfg, since=second.high_watermark)
    assert len(third.rows) == 0
    assert third.high_watermark is None  # the pipeline keeps the previous one


def test_extract_with_query_source(crm_db):
    cfg = _crm_source(crm_db, table=None, query='SELECT "Id", "Email", "LastModifiedDate" FROM "Lead"')
    got = extract_source(cfg, since="2026-11-01 10:00:00")
    assert got.rows["source_id"].tolist() == ["B", "C"]
    assert got.high_watermark == "2026-11-03 10:00:00"


def test_extract_from_sources_file_with_here(tmp_path, crm_db):
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - name: crm\n    kind: sql\n    entity: leads\n    url: sqlite:///{here}/crm.db\n"
        "    table: Lead\n    columns: {source_id: Id}\n")
    from slowburn.sources import load_sources
    (cfg,) = load_sources(tmp_path / "sources.yaml")
    assert extract_source(cfg).rows["source_id"].tolist() == ["A", "B", "C"]


def test_sql_error_is_a_contract_error(crm_db):
    with pytest.raises(ContractError) as err:
        read_sql_source(crm_db, table="NoSuchTable")
    assert "NoSuchTable" in str(err.value)


def test_numeric_watermark_high_watermark_is_numeric_max(tmp_path):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id TEXT, ver INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES ('a', 9), ('b', 10)"))
    engine.dispose()
    (cfg,) = parse_sources({"sources": [{"name": "n", "kind": "sql", "entity": "owners", "url": url, "table": "t",
                                         "watermark": "ver", "columns": {"owner_id": "id"}}]}, tmp_path)
    got = extract_source(cfg)
    assert got.high_watermark == "10"
    assert len(extract_source(cfg, since=got.high_watermark).rows) == 0


# -------------------------------------------------------------------------------------------- PostgreSQL

@pytest.fixture(scope="module")
def pg_engine():
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means no server to test against
        engine.dispose()
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_table(pg_engine):
    name = f"sb_test_leads_{uuid.uuid4().hex[:12]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE TABLE "{name}" (id text PRIMARY KEY, email text, updated timestamptz)'))
    yield name
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))


def _insert(engine, table: str, rows: list[tuple[str, str, str]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f'INSERT INTO "{table}" (id, email, updated) VALUES (:id, :email, :updated)'),
                     [{"id": i, "email": e, "updated": u} for i, e, u in rows])


def _password_free(exc: BaseException) -> None:
    text = "".join([str(exc), repr(exc)] + [str(a) for a in exc.args])
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        text += str(cause)
        cause = cause.__cause__ or cause.__context__
    assert PG_SECRET not in text


@pytest.mark.postgres
def test_pg_error_never_shows_the_password(pg_engine):
    for kwargs in ({"table": "sb_no_such_table_xyz"}, {"query": "SELECT * FROM sb_no_such_table_xyz"}):
        with pytest.raises(Exception) as err:
            read_sql_source(PG_URL_WITH_PASSWORD, **kwargs)
        _password_free(err.value)


@pytest.mark.postgres
def test_pg_sql_error_is_a_contract_error_without_password(pg_engine):
    with pytest.raises(ContractError) as err:
        read_sql_source(PG_URL_WITH_PASSWORD, table="sb_no_such_table_xyz")
    msg = str(err.value)
    assert PG_SECRET not in msg
    assert "sb_no_such_table_xyz" in msg
    assert "127.0.0.1" in msg  # names where it read from, password hidden
    _password_free(err.value)


@pytest.mark.postgres
def test_pg_connection_error_is_a_contract_error_without_password(pg_engine):
    url = f"postgresql+psycopg2://postgres:{PG_SECRET}@127.0.0.1:5432/sb_no_such_db_xyz"
    with pytest.raises(ContractError) as err:
        read_sql_source(url, table="x")
    assert "sb_no_such_db_xyz" in str(err.value)
    _password_free(err.value)


@pytest.mark.postgres
def test_pg_incremental_pull_on_timestamptz(pg_engine, pg_table):
    _insert(pg_engine, pg_table, [
        ("A", "a@x.com", "2026-11-01 10:00:00+00"),
        ("B", "b@x.com", "2026-11-02 10:00:00.123456+02"),  # 08:00:00.123456 UTC
    ])
    cfg = _crm_source(PG_URL, table=pg_table, watermark="updated", chunk_rows=1,
                      columns={"source_id": "id", "email": "email", "updated_at": "updated"})
    full = extract_source(cfg)
    assert full.rows["source_id"].tolist() == ["A", "B"]
    # Sub-second precision is kept as the source stored it (the watermark needs it too).
    assert full.rows["updated_at"].tolist() == ["2026-11-01T10:00:00.000000+00:00",
                                              "2026-11-02T08:00:00.123456+00:00"]
    assert full.high_watermark == "2026-11-02T08:00:00.123456+00:00"

    _insert(pg_engine, pg_table, [
        ("C", "c@x.com", "2026-11-02 08:00:00.123457+00"),  # one microsecond newer
        ("D", "d@x.com", "2026-11-02 08:00:00.123456+00"),  # equal to the watermark: not newer
        ("E", "e@x.com", "2026-11-01 00:00:00+00"),  # older
        ("F", "f@x.com", "2026-11-03 01:00:00+01"),
    ])
    new = extract_source(cfg, since=full.high_watermark)
    assert sorted(new.rows["source_id"].tolist()) == ["C", "F"]
    assert new.high_watermark == "2026-11-03T00:00:00+00:00"
    assert len(extract_source(cfg, since=new.high_watermark).rows) == 0


# ---------------------------------------------------------------------------- engines, schemas, watermarks

def test_db_create_engine_maps_bare_postgresql_to_psycopg2():
    from slowburn.db import create_engine
    engine = create_engine("postgresql://u:pw@127.0.0.1:5432/db")  # no connection is made
    try:
        assert engine.dialect.driver == "psycopg2"
        assert engine.url.drivername == "postgresql+psycopg2"
        assert engine.url.password == "pw"
    finally:
        engine.dispose()
    for url in ("sqlite://", "postgresql+psycopg2://u@h/db"):
        engine = create_engine(url)
        assert engine.url.drivername == url.split(":")[0]
        engine.dispose()


def test_schema_qualified_table(crm_db):
    df = read_sql_source(crm_db, table="main.Lead", watermark="LastModifiedDate", since="2026-11-01 10:00:00")
    assert df["Id"].tolist() == ["B", "C"]


def test_sql_error_names_the_source_and_the_query(crm_db):
    cfg = _crm_source(crm_db, table=None, query="SELECT * FROM NoSuchLead")
    with pytest.raises(ContractError) as err:
        extract_source(cfg)
    msg = str(err.value)
    assert "source 'crm'" in msg and "SELECT * FROM NoSuchLead" in msg and crm_db in msg
    assert "no such table" in msg


def _numbers_db(tmp_path, ddl: str, rows: str) -> str:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(ddl))
        conn.execute(sa.text(rows))
    engine.dispose()
    return url


def _numbers_source(url: str, tmp_path):
    (cfg,) = parse_sources({"sources": [{"name": "n", "kind": "sql", "entity": "owners", "url": url, "table": "t",
                                         "watermark": "ver", "columns": {"owner_id": "id"}}]}, tmp_path)
    return cfg


def test_numeric_watermark_with_nulls_and_reals(tmp_path):
    url = _numbers_db(tmp_path, "CREATE TABLE t (id TEXT, ver REAL)",
                      "INSERT INTO t VALUES ('a', 9.5), ('b', 10.25), ('c', NULL)")
    cfg = _numbers_source(url, tmp_path)
    got = extract_source(cfg)
    assert got.high_watermark == "10.25"
    assert extract_source(cfg, since="9.5").rows["owner_id"].tolist() == ["b"]
    assert len(extract_source(cfg, since=got.high_watermark).rows) == 0


def test_integer_watermark_with_a_null_is_still_an_integer(tmp_path):
    url = _numbers_db(tmp_path, "CREATE TABLE t (id TEXT, ver INTEGER)",
                      "INSERT INTO t VALUES ('a', 9), ('b', 10), ('c', NULL)")
    assert extract_source(_numbers_source(url, tmp_path)).high_watermark == "10"


def test_text_watermark_that_looks_like_a_number_stays_text(tmp_path):
    # A TEXT column compares as text in the database ('9' > '10'), so its watermark must stay text.
    url = _numbers_db(tmp_path, "CREATE TABLE t (id TEXT, ver TEXT)", "INSERT INTO t VALUES ('a', '10'), ('b', '9')")
    cfg = _numbers_source(url, tmp_path)
    got = extract_source(cfg)
    assert got.high_watermark == '"9"'  # JSON text, so that it is not read back as the number 9
    assert len(extract_source(cfg, since=got.high_watermark).rows) == 0
    assert extract_source(cfg, since='"10"').rows["owner_id"].tolist() == ["b"]


def test_text_watermark_that_is_not_json_is_stored_as_written(tmp_path):
    url = _numbers_db(tmp_path, "CREATE TABLE t (id TEXT, ver TEXT)",
                      "INSERT INTO t VALUES ('a', '0009'), ('b', '0010')")
    cfg = _numbers_source(url, tmp_path)
    got = extract_source(cfg)
    assert got.high_watermark == "0010"
    assert extract_source(cfg, since="0009").rows["owner_id"].tolist() == ["b"]
    assert len(extract_source(cfg, since=got.high_watermark).rows) == 0


def test_old_plain_text_watermark_is_still_accepted(crm_db):
    # stored before watermarks were JSON-encoded: not valid JSON, so it is the text itself
    got = extract_source(_crm_source(crm_db), since="2026-11-02 10:00:00")
    assert got.rows["source_id"].tolist() == ["C"]


@pytest.mark.postgres
def test_pg_bare_postgresql_url_and_schema_qualified_table(pg_engine):
    schema = f"sb_test_schema_{uuid.uuid4().hex[:12]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(sa.text(f'CREATE TABLE "{schema}".leads (id text, ver bigint)'))
        conn.execute(sa.text(f'INSERT INTO "{schema}".leads VALUES (\'a\', 9), (\'b\', 10)'))
    try:
        bare = PG_URL.replace("postgresql+psycopg2://", "postgresql://")
        (cfg,) = parse_sources({"sources": [{"name": "pg", "kind": "sql", "entity": "owners", "url": bare,
                                             "table": f"{schema}.leads", "watermark": "ver",
                                             "columns": {"owner_id": "id"}}]}, Path("."))
        got = extract_source(cfg)
        assert got.rows["owner_id"].tolist() == ["a", "b"]
        assert got.high_watermark == "10"
        assert extract_source(cfg, since="9").rows["owner_id"].tolist() == ["b"]
        assert len(extract_source(cfg, since=got.high_watermark).rows) == 0
    finally:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
