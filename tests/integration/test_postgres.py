"""The whole pipeline against the PostgreSQL warehouse at 127.0.0.1:5432."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import NOW
from slowburn.pipeline import RunContext, run_all

pytestmark = pytest.mark.postgres


def test_sample_pipeline_on_postgres_twice(tmp_path, pg_url):
    from slowburn.sample import generate
    manifest = generate(tmp_path / "sample", n_leads=1500, seed=9, now=NOW.to_pydatetime())
    ctx = RunContext(logical_date=NOW, sources_path=manifest["files"]["sources"], home=tmp_path / "home",
                     warehouse_url=pg_url)
    run_all(ctx)
    wh = ctx.warehouse()
    counts = lambda: {t: int(wh.read(f"SELECT COUNT(*) AS n FROM {t}").n[0])
                      for t in ("landed_leads", "quarantine", "lead_links", "golden_leads", "lead_scores",
                                "sales_queue", "nurture_queue", "lead_flags", "touches", "run_ledger")}
    first = counts()
    ledger = wh.read_table("run_ledger").iloc[0]
    assert ledger.landed_leads == 1500 == ledger.linked_leads + ledger.quarantined_leads
    assert ledger.invariant_ok is True or ledger.invariant_ok == 1
    # Types survive COPY: real timestamps and booleans, not text.
    kinds = wh.read("SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'sales_queue' AND table_schema = current_schema()")
    kinds = dict(zip(kinds.column_name, kinds.data_type))
    assert kinds["respond_by"] == "timestamp with time zone" and kinds["owner_kept"] == "boolean"
    run_all(ctx)  # the same logical date again: replaced, never doubled
    assert counts() == first
    respond = wh.read("SELECT MIN(respond_by) AS r FROM sales_queue").r[0]
    assert pd.Timestamp(respond) > NOW
