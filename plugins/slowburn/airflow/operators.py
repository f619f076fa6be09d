"""SlowburnStepOperator: one pipeline step as one Airflow task."""
from __future__ import annotations

import json
import os
from pathlib import Path

from airflow.sdk import BaseOperator


class SlowburnStepOperator(BaseOperator):
    """Run slowburn.pipeline step `step` for this DAG run and push its counts to XCom.

    Data moves between steps as Parquet in the run folder, never through XCom; XCom carries counts
    and paths only. The run folder lives under `artifacts` (default $SLOWBURN_ARTIFACTS, else the local
    SLOWBURN_HOME): on object storage, e.g. s3://bucket/prefix with `artifacts_conn_id` (default
    $SLOWBURN_ARTIFACTS_CONN_ID) naming its Airflow Connection, steps can run on workers that share no disk.
    """

    template_fields = ("sources_path", "home", "artifacts")
    ui_color = "#f4a460"

    def __init__(self, *, step: str, sources_path: str | None = None, home: str | None = None,
                 warehouse_conn_id: str = "slowburn_warehouse", extract_task_id: str = "extract",
                 artifacts: str | None = None, artifacts_conn_id: str | None = None, **kwargs):
        kwargs.setdefault("task_id", step)
        super().__init__(**kwargs)
        self.step = step
        self.sources_path = sources_path
        self.home = home
        self.warehouse_conn_id = warehouse_conn_id
        self.extract_task_id = extract_task_id
        self.artifacts = artifacts
        self.artifacts_conn_id = artifacts_conn_id

    def execute(self, context):
        from slowburn.airflow.hooks import SlowburnWarehouseHook, artifacts_location
        from slowburn.pipeline import RunContext, run_step

        dag_run = context["dag_run"]
        ti = context.get("ti")
        logical_date = context.get("logical_date") or dag_run.run_after
        ctx = RunContext(
            logical_date=logical_date,
            sources_path=Path(self.sources_path or os.environ.get("SLOWBURN_SOURCES",
                                                                  "include/config/sources.yaml")),
            home=Path(self.home or os.environ.get("SLOWBURN_HOME", ".slowburn")),
            warehouse_url=SlowburnWarehouseHook(self.warehouse_conn_id).sqlalchemy_url(),
            # The extract pulls source changes up to the end of the run's data interval, never later.
            data_interval_end=context.get("data_interval_end") or logical_date,
            # Every extract try starts a new attempt folder; later steps work in the one their
            # extract started (its XCom), so a retried or cleared run never mixes two attempts.
            attempt=None if self.step == "extract" else self._extract_attempt(ti),
            try_number=getattr(ti, "try_number", None),
            artifacts=artifacts_location(self.artifacts, self.artifacts_conn_id),
        )
        result = run_step(ctx, self.step)
        self.log.info("%s: %s", self.step, result)
        # XCom gets JSON-safe counts and paths only.
        return json.loads(json.dumps({**result, "run_id": ctx.run_id, "attempt": ctx.attempt}, default=str))

    def _extract_attempt(self, ti) -> int | None:
        """The attempt this DAG run's extract started; None (the newest attempt) outside a task runner."""
        if ti is None:
            return None
        pushed = ti.xcom_pull(task_ids=self.extract_task_id)
        return pushed.get("attempt") if isinstance(pushed, dict) else None
