"""Upgrading a warehouse: adoption of one made by schema.sql, revision 0002's keys and thinning, cost at head."""
from __future__ import annotations

import threading

import pandas as pd
import pytest
import sqlalchemy as sa
from legacy_warehouse import create_legacy_warehouse, describe

from slowburn import migrations
from slowburn.warehouse import Warehouse

R1, R2 = "2026-11-22T000000", "2026-11-23T000000"


def _ts(day: int) -> str:
    return f"2026-11-{day:02d}T08:00:00"


def _rows(conn, table: str, *rows: dict) -> None:
    for row in rows:
        conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"),
                     row)


def _score(run_id, golden_id, score, tier):
    return dict(run_id=run_id, golden_id=golden_id, score=score, tier=tier, probability=score / 100, reasons="[]",
                model_version="m1", touches=1, rep_touches=0, scored_at=_ts(int(run_id[8:10])))


def _flag(run_id, golden_id, flag, first_run_id, status="open"):
    return dict(run_id=run_id, golden_id=golden_id, flag=flag, severity="high", evidence="{}", reason="r",
                suggested_action="a", status=status, first_run_id=first_run_id)


def _queue(run_id, golden_id):
    return dict(run_id=run_id, golden_id=golden_id, owner_kept=True, over_capacity=False, score=80, tier="hot",
                reasons="[]", queued_at=_ts(22), respond_by=_ts(23))


def _fill_two_runs(url: str) -> None:
    """Two nights as the old loads left them: run tables hold both runs, state tables the second night,
    plus the duplicates a hand-edited warehouse could hold."""
    engine = sa.create_engine(url)
    bool_ = (lambda b: b) if engine.dialect.name == "postgresql" else int
    with engine.begin() as conn:
        _rows(conn, "run_ledger", *[dict(run_id=r, logical_date=_ts(d), status="success", landed_leads=2,
                                         linked_leads=2, quarantined_leads=0, golden_leads=2, landed_touches=0,
                                         quarantined_touches=0, sales_queue=1, nurture_queue=1, lead_flags=2,
                                         invariant_ok=bool_(True), step_counts="{}") for r, d in ((R1, 22), (R2, 23))])
        _rows(conn, "landed_leads", *[dict(run_id=r, row_key="crm:1", source_name="crm", row_number=1, row_hash=r)
                                      for r in (R1, R2)])
        _rows(conn, "lead_scores",
              _score(R1, "g1", 70, "warm"), _score(R2, "g1", 70, "warm"),  # unchanged: history keeps R1 only
              _score(R1, "g2", 40, "cool"), _score(R2, "g2", 45, "cool"),  # score changed
              _score(R1, "g3", 60, "warm"), _score(R2, "g3", 60, "hot"),   # tier changed
              _score(R1, "g4", 20, "cold"))                                # not scored in R2
        _rows(conn, "lead_flags",
              _flag(R1, "g1", "stale", None), _flag(R2, "g1", "stale", None),  # pre-lifecycle rows: first = run
              _flag(R1, "g2", "orphaned", R1), _flag(R2, "g2", "orphaned", R1, status="closed"),
              _flag(R2, "g3", "orphaned", R2))
        _rows(conn, "outcomes",
              dict(run_id=R1, source_system="crm", source_id="L1", outcome="lost", closed_at=_ts(10)),
              dict(run_id=R2, source_system="crm", source_id="L1", outcome="won", closed_at=_ts(11)),
              dict(run_id=R2, source_system="crm", source_id="L2", outcome="lost", closed_at=_ts(12)),
              dict(run_id=R2, source_system="crm", source_id="L2", outcome="won", closed_at=_ts(14)),
              dict(run_id=R1, source_system="crm", source_id="L3", outcome="won", closed_at=_ts(1)),
              dict(run_id=R1, source_system="crm", source_id="L3", outcome="won", closed_at=_ts(1)))
        _rows(conn, "golden_leads", *[dict(run_id=r, golden_id=g, source_count=1, source_keys="crm:L1")
                                      for r, g in ((R1, "g1"), (R2, "g1"), (R2, "g2"))])
        _rows(conn, "lead_links", *[dict(run_id=r, row_key=k, source_system="crm", source_id=s, golden_id="g1",
                                         match_probability=1.0, match_rule="exact")
                                    for r, k, s in ((R1, "crm:1", "L1"), (R2, "crm:7", "L1"), (R2, "crm:8", "L2"))])
        _rows(conn, "sales_queue", _queue(R1, "g1"), _queue(R2, "g1"))
        _rows(conn, "nurture_queue", *[dict(run_id=r, golden_id="g2", segment="s", cadence_days=7,
                                            next_touch_at=_ts(30), touches_so_far=0, score=40, tier="cool",
                                            email_opt_out=bool_(False)) for r in (R1, R2)])
        _rows(conn, "current_leads", dict(run_id=R2, row_key="crm:1", source_system="crm", source_id="L1"))
        _rows(conn, "queue_history", *[dict(run_id=r, queue="sales_queue", golden_id="g1") for r in (R1, R2)])
    engine.dispose()


def _read(wh, sql):
    return [tuple(r) for r in wh.read(sql).itertuples(index=False)]


def test_0002_keys_state_tables_and_thins_history(new_url):
    url = new_url()
    create_legacy_warehouse(url)
    _fill_two_runs(url)
    wh = Warehouse(url)
    wh.ensure_schema()
    assert wh.schema_revision() == migrations.head() == "0004"

    assert _read(wh, "SELECT golden_id, run_id, score, tier FROM lead_scores ORDER BY golden_id") == [
        ("g1", R2, 70, "warm"), ("g2", R2, 45, "cool"), ("g3", R2, 60, "hot"), ("g4", R1, 20, "cold")]
    # 0003: each lead's reasons moved to lead_reasons with the score they summed to and when.
    assert _read(wh, "SELECT golden_id, run_id, reasons, reasons_score, model_version FROM lead_reasons "
                     "ORDER BY golden_id") == [
        ("g1", R2, "[]", 70, "m1"), ("g2", R2, "[]", 45, "m1"), ("g3", R2, "[]", 60, "m1"), ("g4", R1, "[]", 20, "m1")]
    assert "reasons" not in {c for c, _, _ in describe(url)["lead_scores"]["columns"]}
    assert _read(wh, "SELECT golden_id, run_id, score, tier, model_version FROM score_history "
                     "ORDER BY golden_id, run_id") == [
        ("g1", R1, 70, "warm", "m1"), ("g2", R1, 40, "cool", "m1"), ("g2", R2, 45, "cool", "m1"),
        ("g3", R1, 60, "warm", "m1"), ("g3", R2, 60, "hot", "m1"), ("g4", R1, 20, "cold", "m1")]
    assert _read(wh, "SELECT golden_id, flag, first_run_id, run_id, status FROM lead_flags "
                     "ORDER BY golden_id, first_run_id") == [
        ("g1", "stale", R1, R1, "open"), ("g1", "stale", R2, R2, "open"), ("g2", "orphaned", R1, R2, "closed"),
        ("g3", "orphaned", R2, R2, "open")]
    outcomes = _read(wh, "SELECT source_id, run_id, outcome FROM outcomes ORDER BY source_id")
    assert outcomes == [("L1", R2, "won"), ("L2", R2, "won"), ("L3", R1, "won")]
    assert _read(wh, "SELECT golden_id, run_id FROM golden_leads ORDER BY golden_id") == [("g1", R2), ("g2", R2)]
    assert _read(wh, "SELECT source_id, row_key, run_id FROM lead_links ORDER BY source_id") == [
        ("L1", "crm:7", R2), ("L2", "crm:8", R2)]
    assert _read(wh, "SELECT golden_id, run_id FROM sales_queue") == [("g1", R2)]
    assert _read(wh, "SELECT golden_id, run_id FROM nurture_queue") == [("g2", R2)]
    # Nothing else lost: run tables outside 0002 and the one current lead stay as they were.
    assert _read(wh, "SELECT run_id FROM landed_leads ORDER BY run_id") == [(R1,), (R2,)]
    assert _read(wh, "SELECT run_id FROM run_ledger ORDER BY run_id") == [(R1,), (R2,)]
    assert _read(wh, "SELECT source_id, row_digest FROM current_leads") == [("L1", None)]
    assert _read(wh, "SELECT run_id, change FROM queue_history ORDER BY run_id") == [(R1, None), (R2, None)]

    tables = describe(url)
    keys = {"current_leads": ["source_system", "source_id"], "lead_links": ["source_system", "source_id"],
            "golden_leads": ["golden_id"], "lead_scores": ["golden_id"], "lead_reasons": ["golden_id"],
            "sales_queue": ["golden_id"],
            "nurture_queue": ["golden_id"], "lead_flags": ["golden_id", "flag", "first_run_id"],
            "outcomes": ["source_system", "source_id"], "score_history": ["golden_id", "run_id"]}
    for table, key in keys.items():
        assert tables[table]["primary_key"] == key, table
        assert any(columns == ("run_id",) for _, columns, _ in tables[table]["indexes"]), table
        if table != "score_history":
            assert ("row_digest", "BIGINT", True) in tables[table]["columns"], table
    assert ("first_run_id", "TEXT", False) in tables["lead_flags"]["columns"]
    # The keys hold: a second row for a key is refused.
    with pytest.raises(sa.exc.IntegrityError), wh.engine.begin() as conn:
        _rows(conn, "lead_scores", {k: v for k, v in _score("2026-11-24T000000", "g1", 90, "hot").items()
                                    if k != "reasons"})


def test_0003_moves_reasons_out_of_lead_scores_and_back(new_url):
    """Upgraded, each lead's reasons are in lead_reasons (the score they summed to, when); downgraded to
    0002, back in lead_scores."""
    from alembic import command

    url = new_url()
    engine = sa.create_engine(url)
    g1 = {**_score(R2, "g1", 70, "warm"), "reasons": '[{"factor": "a", "points": 70}]'}
    with engine.begin() as conn:
        migrations.upgrade(conn, "0002")
        _rows(conn, "lead_scores", g1, _score(R2, "g2", 45, "cool"))
        migrations.upgrade(conn, "0003")
    stored = Warehouse(url).reasons_of(["g2", "g1", "g9"]).sort_values("golden_id")
    assert stored.values.tolist() == [["g1", g1["reasons"], 70, pd.Timestamp(g1["scored_at"], tz="UTC")],
                                      ["g2", "[]", 45, pd.Timestamp(g1["scored_at"], tz="UTC")]]
    with engine.begin() as conn:
        command.downgrade(migrations.config(conn), "0002")
    assert _read(Warehouse(url), "SELECT golden_id, reasons FROM lead_scores ORDER BY golden_id") == [
        ("g1", g1["reasons"]), ("g2", "[]")]
    assert "lead_reasons" not in describe(url)
    engine.dispose()


def test_0004_takes_scores_out_of_the_nurture_queue_and_back(new_url):
    """Upgraded, nurture rows keep only routing facts (scores stay in lead_scores); downgraded to 0003,
    each row gets its lead's score, tier and probability back from lead_scores."""
    from alembic import command

    url = new_url()
    engine = sa.create_engine(url)
    nurture = dict(run_id=R2, golden_id="g2", segment="s", cadence_days=7, next_touch_at=_ts(30), touches_so_far=3,
                   email_opt_out=False if engine.dialect.name == "postgresql" else 0)
    with engine.begin() as conn:
        migrations.upgrade(conn, "0003")
        _rows(conn, "lead_scores", {k: v for k, v in _score(R2, "g2", 45, "cool").items() if k != "reasons"})
        _rows(conn, "nurture_queue", {**nurture, "score": 40, "tier": "cool", "probability": 0.4})
        migrations.upgrade(conn, "0004")
    columns = {c for c, _, _ in describe(url)["nurture_queue"]["columns"]}
    assert not columns & {"score", "tier", "probability"}
    assert _read(Warehouse(url), "SELECT golden_id, touches_so_far FROM nurture_queue") == [("g2", 3)]
    with engine.begin() as conn:
        command.downgrade(migrations.config(conn), "0003")
    assert _read(Warehouse(url), "SELECT golden_id, score, tier, probability FROM nurture_queue") == [
        ("g2", 45, "cool", 0.45)]
    engine.dispose()


def test_an_old_partial_table_gains_columns_and_the_new_key(tmp_path):
    """A table an early schema.sql made (no primary key, few columns) is adopted, then keyed by 0002."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with sa.create_engine(url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE sales_queue (run_id TEXT NOT NULL, golden_id TEXT NOT NULL)")
        conn.exec_driver_sql(f"INSERT INTO sales_queue VALUES ('{R1}', 'g-old'), ('{R2}', 'g-old')")
    wh = Warehouse(url)
    wh.ensure_schema()
    table = describe(url)["sales_queue"]
    assert {"owner_id", "respond_by", "score", "reasons", "row_digest"} <= {c[0] for c in table["columns"]}
    assert table["primary_key"] == ["golden_id"]
    assert _read(wh, "SELECT golden_id, run_id FROM sales_queue") == [("g-old", R2)]


def test_at_head_ensure_schema_only_reads_the_version_once(new_url):
    url = new_url()
    Warehouse(url).ensure_schema()
    wh = Warehouse(url)
    statements = []
    sa.event.listen(wh.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    wh.ensure_schema()
    assert statements and not [s for s in statements if not s.lstrip().upper().startswith(("SELECT", "PRAGMA"))]
    seen = len(statements)
    for _ in range(5):
        wh.ensure_schema()
    assert len(statements) == seen


def test_concurrent_first_upgrades_take_turns(new_url):
    """Two processes' first steps upgrade the same new warehouse at once: one migrates, the other waits."""
    url = new_url()
    errors, barrier = [], threading.Barrier(3)

    def upgrade():
        barrier.wait()
        try:
            Warehouse(url).ensure_schema()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert Warehouse(url).schema_revision() == migrations.head()


def test_a_failed_upgrade_leaves_the_warehouse_as_it_was(new_url):
    """The migrations run in one transaction on both dialects (SQLite too: BEGIN IMMEDIATE): a failure late
    in 0002 leaves the thinned tables, score_history and the version row as they were before."""
    url = new_url()
    create_legacy_warehouse(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # an index of the name 0002 gives lead_scores' run_id index, elsewhere
        conn.exec_driver_sql("CREATE INDEX ix_lead_scores_run ON quarantine (rule)")
        _rows(conn, "lead_scores", _score(R1, "g1", 70, "warm"), _score(R2, "g1", 70, "warm"))
    with pytest.raises(sa.exc.DBAPIError, match="ix_lead_scores_run"):
        Warehouse(url).ensure_schema()
    names = sa.inspect(engine).get_table_names()
    assert "score_history" not in names and migrations.VERSION_TABLE not in names
    assert describe(url)["lead_scores"]["primary_key"] == ["run_id", "golden_id"]
    assert len(Warehouse(url).read("SELECT * FROM lead_scores")) == 2
    engine.dispose()
