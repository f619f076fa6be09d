"""SlowburnStepOperator: one pipeline step as one Airflow task."""
from __future__ import annotations

import json
import os
from pathlib import Path

from airflow.sdk import BaseOperator


class SlowburnStepOperator(BaseOperator):
    """Run slowburn.pipeline step `step` for this DAG run and push its counts to XCom.

    Data moves between steps as Parquet in the run folder, never through XCom; XCom carries counts
    and paths only.
    """

    template_fields = ("sources_path", "home")
    ui_color = "#f4a460"

    def __init__(self, *, step: str, sources_path: str | None = None, home: str | None = None,
                 warehouse_conn_id: str = "slowburn_warehouse", **kwargs):
        kwargs.setdefault("task_id", step)
        super().__init__(**kwargs)
        self.step = step
        self.sources_path = sources_path
        self.home = home
        self.warehouse_conn_id = warehouse_conn_id

    def execute(self, context):
        from slowburn.airflow.hooks import SlowburnWarehouseHook
        from slowburn.pipeline import RunContext, run_step

        dag_run = context["dag_run"]
        logical_date = context.get("logical_date") or dag_run.run_after
        ctx = RunContext(
            logical_date=logical_date,
            sources_path=Path(self.sources_path or os.environ.get("SLOWBURN_SOURCES",
                                                                  "include/config/sources.yaml")),
            home=Path(self.home or os.environ.get("SLOWBURN_HOME", ".slowburn")),
            warehouse_url=SlowburnWarehouseHook(self.warehouse_conn_id).sqlalchemy_url(),
        )
        result = run_step(ctx, self.step)
        self.log.info("%s: %s", self.step, result)
        # XCom gets JSON-safe counts and paths only.
        return json.loads(json.dumps({**result, "run_id": ctx.run_id}, default=str))
