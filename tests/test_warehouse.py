"""Transactional, idempotent loads on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from slowburn.contracts import ContractError
from slowburn.warehouse import Warehouse

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _pg_available() -> bool:
    try:
        with sa.create_engine(PG_URL).connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path):
    if request.param == "sqlite":
        yield Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
        return
    if not _pg_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    schema = f"sb_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield Warehouse(f"{PG_URL}?options=-csearch_path%3D{schema}")
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def _ledger(**extra):
    base = dict(logical_date=pd.Timestamp("2026-11-23", tz="UTC"), status="success", landed_leads=2,
                linked_leads=2, quarantined_leads=0, golden_leads=1, landed_touches=0, quarantined_touches=0,
                sales_queue=0, nurture_queue=1, lead_flags=0, invariant_ok=True, step_counts="{}")
    return {**base, **extra}


def _links(n=2):
    return pd.DataFrame({"row_key": [f"crm:{i}" for i in range(n)], "source_system": "crm",
                         "source_id": [f"L{i}" for i in range(n)], "golden_id": "g-1",
                         "match_probability": 1.0, "match_rule": "exact_email"})


def _quarantine(n):
    return pd.DataFrame({"entity": "leads", "row_key": [f"crm:{i}" for i in range(n)], "rule": "invalid_email",
                         "reason": "bad"})


def test_replace_run_is_idempotent(warehouse):
    """Run tables keep one copy per run; state tables hold only the latest picture."""
    warehouse.replace_run("r1", {"quarantine": _quarantine(2), "lead_links": _links()}, _ledger())
    warehouse.replace_run("r1", {"quarantine": _quarantine(2), "lead_links": _links()}, _ledger())
    warehouse.replace_run("r2", {"quarantine": _quarantine(3), "lead_links": _links(3)}, _ledger())
    counts = warehouse.read("SELECT run_id, COUNT(*) AS n FROM quarantine GROUP BY run_id ORDER BY run_id")
    assert counts.n.tolist() == [2, 3]
    assert len(warehouse.read_table("lead_links")) == 3
    assert len(warehouse.read_table("run_ledger")) == 2


def test_failure_mid_load_leaves_previous_state(warehouse):
    warehouse.replace_run("r1", {"lead_links": _links()}, _ledger())
    bad_scores = pd.DataFrame({"golden_id": ["g-1"], "score": [None], "tier": ["hot"], "reasons": ["[]"],
                               "model_version": ["v"], "touches": [0], "rep_touches": [0],
                               "scored_at": [pd.Timestamp("2026-11-23", tz="UTC")]})  # score NOT NULL
    with pytest.raises(Exception):
        warehouse.replace_run("r1", {"lead_links": _links(5), "lead_scores": bad_scores}, _ledger())
    # The failed attempt's deletes and inserts are rolled back together.
    assert len(warehouse.read_table("lead_links", "r1")) == 2
    assert len(warehouse.read_table("run_ledger")) == 1


def test_timestamps_and_booleans_round_trip(warehouse):
    golden = pd.DataFrame({"golden_id": ["g-1"], "created_at": [pd.Timestamp("2026-11-20T08:30:00", tz="UTC")],
                           "email_opt_out": [True], "do_not_call": [False], "source_count": [1],
                           "source_keys": ["crm:L1"]})
    warehouse.replace_run("r1", {"golden_leads": golden}, _ledger())
    got = warehouse.read_table("golden_leads").iloc[0]
    stamp = pd.Timestamp(got.created_at)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    assert stamp == pd.Timestamp("2026-11-20T08:30:00", tz="UTC")
    assert bool(got.email_opt_out) is True and bool(got.do_not_call) is False


def test_watermarks_come_from_earlier_successful_runs(warehouse):
    d1, d2 = pd.Timestamp("2026-11-22", tz="UTC"), pd.Timestamp("2026-11-23", tz="UTC")
    wm = lambda v, d: pd.DataFrame({"source_name": ["crm"], "high_watermark": [v], "rows_landed": [1],
                                    "logical_date": [d]})
    warehouse.replace_run("r1", {"source_watermarks": wm("2026-11-21T10:00:00", d1)}, _ledger(logical_date=d1))
    warehouse.replace_run("r2", {"source_watermarks": wm("2026-11-22T10:00:00", d2)}, _ledger(logical_date=d2))
    assert warehouse.previous_watermarks("r2", d2) == {"crm": "2026-11-21T10:00:00"}
    assert warehouse.previous_watermarks("r3", d2 + pd.Timedelta(days=1)) == {"crm": "2026-11-22T10:00:00"}
    assert warehouse.previous_watermarks("r1", d1) == {}


def test_password_is_redacted_in_repr():
    wh = Warehouse("postgresql+psycopg2://bob:s3cret@127.0.0.1:5432/test")
    assert "s3cret" not in repr(wh)


# ------------------------------------------------------------------------------------------ run lock

def test_run_lock_refuses_a_second_run_and_hands_over_to_a_newer_attempt(warehouse):
    from slowburn.warehouse import RunLocked, RunSuperseded
    warehouse.acquire_run_lock("2026-11-23T000000", 1, "tok-a")
    warehouse.acquire_run_lock("2026-11-23T000000", 1, "tok-a")  # renewing is idempotent
    with pytest.raises(RunLocked, match=r"locked by run 2026-11-23T000000 attempt 1.*slowburn unlock"):
        warehouse.acquire_run_lock("2026-11-24T000000", 1, "tok-b")
    warehouse.acquire_run_lock("2026-11-23T000000", 2, "tok-c")  # a newer attempt of the same run takes over
    assert warehouse.run_lock()["token"] == "tok-c"
    with pytest.raises(RunSuperseded, match="superseded by attempt 2"):
        warehouse.acquire_run_lock("2026-11-23T000000", 1, "tok-a")


def test_stale_run_lock_is_taken_over(warehouse, monkeypatch):
    warehouse.acquire_run_lock("2026-11-23T000000", 1, "dead")
    monkeypatch.setenv("SLOWBURN_LOCK_STALE_MINUTES", "0")
    warehouse.acquire_run_lock("2026-11-24T000000", 1, "alive")
    assert warehouse.run_lock()["run_id"] == "2026-11-24T000000"


def test_load_proves_it_holds_the_lock_and_releases_it(warehouse):
    from slowburn.warehouse import RunSuperseded
    warehouse.acquire_run_lock("r1", 1, "tok-1")
    with pytest.raises(RunSuperseded, match="no longer holds the warehouse lock"):
        warehouse.replace_run("r1", {"lead_links": _links()}, _ledger(attempt=1), token="someone-else")
    assert warehouse.read_table("run_ledger").empty
    warehouse.replace_run("r1", {"lead_links": _links()}, _ledger(attempt=1), token="tok-1")
    assert warehouse.run_lock() is None and len(warehouse.read_table("run_ledger")) == 1


def test_older_run_is_refused_inside_the_load(warehouse):
    from slowburn.warehouse import OlderRunRefused
    warehouse.replace_run("2026-11-24T000000", {"lead_links": _links(3)}, _ledger())
    warehouse.acquire_run_lock("2026-11-23T000000", 1, "tok-old")
    with pytest.raises(OlderRunRefused, match="older than run 2026-11-24T000000"):
        warehouse.replace_run("2026-11-23T000000", {"lead_links": _links(1)}, _ledger(), token="tok-old")
    assert len(warehouse.read_table("lead_links")) == 3


def test_concurrent_loads_end_in_one_named_error(warehouse):
    """Two threads load while the lock belongs to one: the other fails by name, never a raw UniqueViolation."""
    import threading

    from slowburn.warehouse import RunRefused
    warehouse.acquire_run_lock("r1", 2, "winner")
    errors, barrier = [], threading.Barrier(2)

    def load(token):
        barrier.wait()
        try:
            warehouse.replace_run("r1", {"lead_links": _links(4)}, _ledger(attempt=2), token=token)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=load, args=(t,)) for t in ("winner", "loser")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(errors) == 1 and isinstance(errors[0], RunRefused), errors
    assert len(warehouse.read_table("lead_links")) == 4 and len(warehouse.read_table("run_ledger")) == 1


def test_unusable_url_is_named_without_its_password():
    from slowburn.contracts import ContractError
    with pytest.raises(ContractError, match="postgresql://") as err:
        Warehouse("postgres://bob:s3cret@127.0.0.1:5432/test")
    assert "s3cret" not in str(err.value)
    with pytest.raises(ContractError, match="cannot be parsed") as err:
        Warehouse("postgresql://bob:s3cret@host:port/test")
    assert "s3cret" not in str(err.value)


def _golden(ids, company="Acme"):
    return pd.DataFrame({"golden_id": ids, "company": company, "source_count": 1,
                         "source_keys": [f"crm:{g}" for g in ids],
                         "created_at": pd.Timestamp("2026-11-20T08:30:00", tz="UTC"), "email_opt_out": False})


def test_state_tables_change_by_key(warehouse):
    """A load writes only new and changed rows, deletes gone keys, and leaves unchanged rows (and their run) alone."""
    first = warehouse.replace_run("r1", {"golden_leads": _golden(["g1", "g2", "g3"])}, _ledger())
    assert first["golden_leads"] == {"inserted": 3, "updated": 0, "deleted": 0, "unchanged": 0}
    same = warehouse.replace_run("r2", {"golden_leads": _golden(["g1", "g2", "g3"])}, _ledger())
    assert same["golden_leads"] == {"inserted": 0, "updated": 0, "deleted": 0, "unchanged": 3}
    assert set(warehouse.read_table("golden_leads").run_id) == {"r1"}  # nothing was rewritten
    night = _golden(["g1", "g2", "g4"])
    night.loc[night.golden_id == "g2", "company"] = "Acme Corp"
    written = warehouse.replace_run("r3", {"golden_leads": night}, _ledger())
    assert written["golden_leads"] == {"inserted": 1, "updated": 1, "deleted": 1, "unchanged": 1}
    rows = warehouse.read_table("golden_leads").set_index("golden_id")
    assert sorted(rows.index) == ["g1", "g2", "g4"]
    assert rows.run_id.to_dict() == {"g1": "r1", "g2": "r3", "g4": "r3"} and rows.loc["g2", "company"] == "Acme Corp"
    # The ledger records what each load wrote, for the table-growth report.
    steps = json.loads(warehouse.read("SELECT step_counts FROM run_ledger WHERE run_id = 'r3'").step_counts[0])
    assert steps["load"]["rows_written"]["golden_leads"]["updated"] == 1


def test_row_digest_ignores_dtype_but_not_values():
    """The same values read back another night with other dtypes hash the same; any value change does not."""
    from slowburn.warehouse import row_digest

    a = pd.DataFrame({"s": ["x", None], "n": [1.0, None], "t": pd.to_datetime(["2026-11-20", None], utc=True),
                      "b": [True, False], "empty": [None, None]})
    b = a.astype({"s": "string", "n": "Float64", "b": "boolean", "empty": "string"})
    b["t"] = b["t"].astype("datetime64[us, UTC]")
    cols = list(a.columns)
    assert (row_digest(a, cols) == row_digest(b, cols)).all()
    c = a.copy()
    c.loc[1, "s"] = "y"
    c.loc[0, "n"] = 1.0001
    assert (row_digest(a, cols) != row_digest(c, cols)).tolist() == [True, True]
    c = a.copy()
    c.loc[0, "n"] = 1.00001  # below the compared precision (FLOAT_DIGITS)
    assert (row_digest(a, cols) == row_digest(c, cols)).all()


def test_state_frame_with_a_repeated_key_is_refused_and_nothing_changes(warehouse):
    from slowburn.contracts import ContractError

    warehouse.replace_run("r1", {"golden_leads": _golden(["g1"])}, _ledger())
    with pytest.raises(ContractError, match=r"golden_leads: 2 row\(s\) share a golden_id"):
        warehouse.replace_run("r2", {"golden_leads": _golden(["g2", "g2"])}, _ledger())
    assert warehouse.read_table("golden_leads").golden_id.tolist() == ["g1"]
    assert warehouse.read_table("run_ledger").run_id.tolist() == ["r1"]


def test_score_history_keeps_a_row_only_when_score_or_tier_moves(warehouse):
    def scores(values, at):
        return pd.DataFrame({"golden_id": [f"g{i}" for i in range(len(values))], "score": [v for v, _ in values],
                             "tier": [t for _, t in values], "reasons": "[]", "model_version": "v1", "touches": 0,
                             "rep_touches": 0, "probability": [v / 100 for v, _ in values],
                             "scored_at": pd.Timestamp(at, tz="UTC")})

    warehouse.replace_run("r1", {"lead_scores": scores([(10, "cold"), (50, "warm"), (80, "hot")], "2026-11-21")},
                          _ledger())
    night2 = scores([(10, "cold"), (55, "warm"), (80, "hot")], "2026-11-22")  # scored_at alone is no change
    warehouse.replace_run("r2", {"lead_scores": night2}, _ledger())
    warehouse.replace_run("r2", {"lead_scores": night2}, _ledger())  # a re-run of the same night: same history
    history = warehouse.read("SELECT run_id, golden_id, score FROM score_history ORDER BY run_id, golden_id")
    assert history.values.tolist() == [["r1", "g0", 10], ["r1", "g1", 50], ["r1", "g2", 80], ["r2", "g1", 55]]
    current = warehouse.read_table("lead_scores").set_index("golden_id")
    assert current.run_id.to_dict() == {"g0": "r1", "g1": "r2", "g2": "r1"}


def test_kept_digests_are_used_only_when_their_checksum_is_the_tables(warehouse):
    """A load may take the previous state's digests from the copy the last load kept (no million-row read),
    but only while the table's row count and digest checksum match it: a row changed behind the load's
    back is still found and rewritten."""
    from slowburn.warehouse import StateDigests

    kept = {}
    reads = []
    sa.event.listen(warehouse.engine, "before_cursor_execute",
                    lambda *a: reads.append(a[2]) if "row_digest FROM golden_leads" in a[2] else None)

    def load(run, frame, digests=True):
        states = StateDigests(kept.get, kept.__setitem__) if digests else None
        return warehouse.replace_run(run, {"golden_leads": frame}, _ledger(), digests=states)["golden_leads"]

    first = _golden(["g-1", "g-2", "g-3"])
    load("r1", first)
    assert set(kept["golden_leads"]["golden_id"]) == {"g-1", "g-2", "g-3"}
    reads.clear()
    second = _golden(["g-1", "g-2", "g-3", "g-4"], company="Acme")
    assert load("r2", second) == {"inserted": 1, "updated": 0, "deleted": 0, "unchanged": 3}
    assert reads == []  # the kept digests matched the table: it was not read
    # Someone edits a row outside the load (its digest no longer matches the values the load would write).
    with warehouse.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE golden_leads SET company = 'Edited', row_digest = row_digest + 1 "
                             "WHERE golden_id = 'g-2'")
    assert load("r3", second) == {"inserted": 0, "updated": 1, "deleted": 0, "unchanged": 3}
    assert reads, "a copy whose checksum is not the table's must not be trusted"
    company = warehouse.read("SELECT golden_id, company FROM golden_leads ORDER BY golden_id")
    assert company["company"].tolist() == second.sort_values("golden_id")["company"].tolist()
    # Without a kept copy (an older version's folder) the table is read, with the same result.
    reads.clear()
    assert load("r4", second.iloc[1:], digests=False) == {"inserted": 0, "updated": 0, "deleted": 1, "unchanged": 3}
    assert reads


def _scores(ids, score=50):
    return pd.DataFrame({"golden_id": ids, "score": score, "tier": "warm", "probability": 0.5, "model_version": "m1",
                         "touches": 1, "rep_touches": 0, "scored_at": pd.Timestamp("2026-11-23", tz="UTC")})


def _reasons(ids, score=50, at="2026-11-23"):
    return pd.DataFrame({"golden_id": ids, "reasons": [f'[{{"factor": "{g}", "points": {score}}}]' for g in ids],
                         "reasons_score": score, "model_version": "m1", "reasons_at": pd.Timestamp(at, tz="UTC")})


def test_reasons_are_written_only_for_explained_leads_and_every_scored_lead_keeps_some(warehouse):
    """lead_reasons holds tonight's explained leads; the others keep theirs untouched; a lead no longer
    scored loses its reasons; a load that would leave a scored lead without reasons loads nothing."""
    warehouse.replace_run("r1", {"lead_scores": _scores(["g1", "g2"]), "lead_reasons": _reasons(["g1", "g2"])},
                          _ledger())
    # Night 2: g1 merged away, g2's score decayed (its reasons carried), g3 new and explained.
    written = warehouse.replace_run("r2", {"lead_scores": _scores(["g2", "g3"], 44),
                                           "lead_reasons": _reasons(["g3"], 44, "2026-11-24")}, _ledger())
    assert written["lead_reasons"] == {"inserted": 1, "updated": 0, "deleted": 1, "unchanged": 0}
    stored = warehouse.read("SELECT golden_id, run_id, reasons_score FROM lead_reasons ORDER BY golden_id")
    assert stored.values.tolist() == [["g2", "r1", 50], ["g3", "r2", 44]]
    assert warehouse.reasons_of(["g3", "g2"]).set_index("golden_id")["reasons_at"].dt.strftime("%Y-%m-%d").to_dict() \
        == {"g2": "2026-11-23", "g3": "2026-11-24"}
    # A re-run of night 2 changes nothing.
    again = warehouse.replace_run("r2", {"lead_scores": _scores(["g2", "g3"], 44),
                                         "lead_reasons": _reasons(["g3"], 44, "2026-11-24")}, _ledger())
    assert again["lead_reasons"] == {"inserted": 0, "updated": 0, "deleted": 0, "unchanged": 1}
    # Night 3: g3 sent again unchanged next to a new g5 (an outer merge turned the stored 64-bit digests
    # into floats here once, and every unchanged row looked changed).
    night3 = warehouse.replace_run("r3", {"lead_scores": _scores(["g2", "g3", "g5"], 44),
                                          "lead_reasons": _reasons(["g3", "g5"], 44, "2026-11-24")}, _ledger())
    assert night3["lead_reasons"] == {"inserted": 1, "updated": 0, "deleted": 0, "unchanged": 1}
    # Night 4 scores g4 but brings no reasons for it: refused, and night 3's state stays.
    with pytest.raises(ContractError, match=r"1 scored lead\(s\) would have no reasons \(first: g4\)"):
        warehouse.replace_run("r4", {"lead_scores": _scores(["g2", "g3", "g4"]),
                                     "lead_reasons": _reasons(["g3"])}, _ledger())
    assert sorted(warehouse.read("SELECT golden_id FROM lead_scores").golden_id) == ["g2", "g3", "g5"]
    assert warehouse.read("SELECT run_id FROM run_ledger ORDER BY run_id").run_id.tolist() == ["r1", "r2", "r3"]


def test_scores_before_a_run_are_each_leads_newest_history_row_before_it(warehouse):
    """score_history keeps a row only when a score moved: a lead's score before a run is its newest row
    from an earlier run, whatever later runs wrote."""
    rows = [("g1", "2026-11-21T000000", 40), ("g1", "2026-11-22T000000", 52), ("g1", "2026-11-23T000000", 81),
            ("g2", "2026-11-20T000000", 30)]
    warehouse.ensure_schema()
    with warehouse.engine.begin() as conn:
        for golden_id, run_id, score in rows:
            conn.execute(sa.text("INSERT INTO score_history (golden_id, run_id, score, tier) VALUES (:g, :r, :s, 'x')"),
                         {"g": golden_id, "r": run_id, "s": score})
    before = warehouse.scores_before("2026-11-23T000000", ["g2", "g1", "g9", "g1"])
    assert before.tolist()[:2] + before.tolist()[3:] == [30.0, 52.0, 52.0] and np.isnan(before.iloc[2])
