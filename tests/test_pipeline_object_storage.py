"""Run folders on object storage: steps on workers that share no disk, against a real S3 server (moto).

Each step runs in its own process with its own empty --home, as on CeleryExecutor/KubernetesExecutor
workers; the bucket and the warehouse are all they have in common.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from conftest import MOTO_SECRET, NOW
from slowburn import storage
from slowburn.pipeline import STEPS, WRITTEN_BY, RunContext

RUN = "runs/2026-11-23T000000/attempt-1"


def _slowburn(*args, cwd):
    return subprocess.run([sys.executable, "-m", "slowburn.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_each_step_in_its_own_process_shares_only_the_bucket_and_the_warehouse(s3, tmp_path):
    from slowburn.sample import generate
    from slowburn.warehouse import Warehouse

    manifest = generate(tmp_path / "sample", n_leads=300, seed=7, now=NOW.to_pydatetime())
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    common = ["--artifacts", s3.url("nightly"), "--warehouse", warehouse, "--sources",
              str(manifest["files"]["sources"]), "--logical-date", "2026-11-23"]
    homes = []
    for step in STEPS:
        homes.append(tmp_path / f"worker-{step}")
        done = _slowburn("step", step, *common, "--home", str(homes[-1]), cwd=tmp_path)
        assert done.returncode == 0, f"{step}: {done.stderr[-3000:]}"
        assert MOTO_SECRET not in done.stdout + done.stderr
    status = _slowburn("status", *common, "--home", str(tmp_path / "worker-status"), cwd=tmp_path)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "ledger: landed 300 = linked " in status.stdout and "(balanced)" in status.stdout
    assert f"run summary: {s3.url('nightly')}/{RUN}/summary.html" in status.stdout

    # Every output of the attempt is in the bucket ...
    keys = set(s3.keys("nightly"))
    expected = ({f"nightly/{RUN}/{name}.parquet" for name in WRITTEN_BY}
                | {f"nightly/{RUN}/{name}.json" for name in ("attempt", "watermarks", "validation", "dedupe_report",
                                                              "scoring", "step_counts", "summary")}
                | {f"nightly/{RUN}/summary.html", f"nightly/{RUN}/data_docs/index.html"})
    assert expected <= keys, sorted(expected - keys)
    # ... stamped with the attempt's token, which is the one the warehouse loaded.
    ctx = RunContext(logical_date=NOW, sources_path=manifest["files"]["sources"], home=tmp_path / "reader",
                     warehouse_url=warehouse, artifacts=s3.location("nightly"))
    assert ctx.attempts() == [1]
    for name in WRITTEN_BY:
        meta = storage.parquet_schema(ctx.path(name)).metadata
        assert meta[b"slowburn_attempt"].decode() == ctx.token, name
    ledger = Warehouse(warehouse).read_table("run_ledger", ctx.run_id).iloc[0]
    assert bool(ledger["invariant_ok"]) and ledger["attempt_token"] == ctx.token
    assert ledger["landed_leads"] == ctx.rows("landed_leads") == 300
    assert ledger["landed_leads"] == ledger["linked_leads"] + ledger["quarantined_leads"]
    summary = json.loads((ctx.run_dir / "summary.json").read_text())
    assert summary["paths"]["data_docs"] == f"{s3.url('nightly')}/{RUN}/data_docs/index.html"
    assert summary["paths"]["run_dir"] == f"{s3.url('nightly')}/{RUN}"

    # Nothing of the run is on a worker's disk: only the GX context the validate step renders Data Docs in.
    local = [p.relative_to(tmp_path) for home in homes if home.exists() for p in home.rglob("*") if p.is_file()]
    assert [p for p in local if p.parts[1] != "gx"] == []
    assert any(p.parts[0] == "worker-validate" for p in local)


def test_attempt_numbers_are_claimed_by_a_conditional_create(s3, tmp_path):
    """No folders on S3: concurrent extracts still get distinct attempts (If-None-Match on attempt.json)."""
    root = s3.location("claims")
    storage.create_exclusive(root / "probe.json", b"{}")
    with pytest.raises(FileExistsError):
        storage.create_exclusive(root / "probe.json", b"{}")

    contexts = [RunContext(logical_date=NOW, sources_path=tmp_path / "none.yaml", home=tmp_path / f"w{i}",
                           artifacts=root) for i in range(6)]
    barrier = threading.Barrier(len(contexts))
    errors = []

    def start(ctx):
        try:
            barrier.wait()
            ctx.start_attempt()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(c.attempt for c in contexts) == [1, 2, 3, 4, 5, 6]
    for ctx in contexts:  # each attempt.json in the bucket is the one its own context wrote
        fresh = RunContext(logical_date=NOW, sources_path=ctx.sources_path, home=tmp_path, artifacts=root,
                           attempt=ctx.attempt)
        assert fresh.token == ctx.token


def test_a_file_url_and_a_plain_path_are_the_same_local_folder(tmp_path, monkeypatch):
    """Local runs keep pathlib paths (rename-based atomic writes), whichever way the folder is given."""
    from pathlib import Path

    assert type(storage.location(str(tmp_path))) is type(tmp_path) and storage.location(str(tmp_path)) == tmp_path
    assert storage.location(f"file://{tmp_path}") == tmp_path
    ctx = RunContext(logical_date=NOW, sources_path=tmp_path / "none.yaml", home=tmp_path / "home")
    assert ctx.artifacts == tmp_path / "home" and isinstance(ctx.run_root, Path)
    monkeypatch.setenv("SLOWBURN_ARTIFACTS_OPTIONS", "endpoint_url=http://x")
    with pytest.raises(ValueError, match="SLOWBURN_ARTIFACTS_OPTIONS is not a JSON object"):
        storage.options_from_env()


@pytest.mark.airflow
def test_the_dag_tasks_reach_the_bucket_through_an_airflow_connection(s3, tmp_path, tiny_sources, monkeypatch,
                                                                       caplog):
    """SLOWBURN_ARTIFACTS + an `aws` Connection: Airflow's ObjectStoragePath carries the credentials."""
    pytest.importorskip("airflow.providers.amazon.aws.fs.s3")
    from pathlib import Path
    from types import SimpleNamespace

    from airflow.dag_processing.dagbag import DagBag

    # Only the Connection knows the credentials and the endpoint.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SLOWBURN_ARTIFACTS_OPTIONS"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AIRFLOW_CONN_SLOWBURN_ARTIFACTS", json.dumps(
        {"conn_type": "aws", "login": "testing", "password": MOTO_SECRET,
         "extra": {"endpoint_url": s3.endpoint, "region_name": "us-east-1"}}))
    monkeypatch.setenv("SLOWBURN_ARTIFACTS", s3.url("airflow"))
    monkeypatch.setenv("SLOWBURN_ARTIFACTS_CONN_ID", "slowburn_artifacts")
    monkeypatch.setenv("SLOWBURN_SOURCES", str(tiny_sources))
    monkeypatch.setenv("AIRFLOW_CONN_SLOWBURN_WAREHOUSE",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")}))
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[1] / "dags")).dags["slowburn_nightly"]
    for step in STEPS:
        monkeypatch.setenv("SLOWBURN_HOME", str(tmp_path / f"worker-{step}"))
        xcom = dag.get_task(step).execute({"dag_run": SimpleNamespace(run_after=NOW), "logical_date": NOW})
        assert xcom["attempt"] == 1
    assert xcom["invariant_ok"] is True
    assert xcom["summary_html"].endswith(f"{s3.name}/airflow/{RUN}/summary.html")
    keys = s3.keys("airflow")
    assert f"airflow/{RUN}/lead_links.parquet" in keys and f"airflow/{RUN}/summary.json" in keys
    assert not list(tmp_path.glob("worker-*/runs"))
    summary = s3.read(f"airflow/{RUN}/summary.json").decode()
    assert MOTO_SECRET not in summary and json.loads(summary)["ledger"]["invariant_ok"] is True
    assert MOTO_SECRET not in caplog.text
