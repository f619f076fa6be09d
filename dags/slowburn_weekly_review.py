"""slowburn_weekly_review: the weekly lead-review report per rep and per team, every Monday morning.

Parsing this file imports only Airflow: pandas, matplotlib and the report code load inside the task.
"""
from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

DOC = """
### slowburn weekly lead review
Reads the warehouse (the `slowburn_warehouse` Connection) as the latest nightly run left it and writes
`$SLOWBURN_HOME/reviews/<week reviewed>/` (Monday's run reviews the ISO week that just ended; a re-run
keeps the earlier version under `versions/`): `review.html` with the meeting agenda on top (one next
action per lead, counted per rep and kind, with the change since the previous review), totals per team
and per rep, plots (funnel by stage, lead age, scores, open flags over time, follow-up depth against
the 5-12 contacts pattern); one page per rep with their short action list first and then every lead
they own, open leads first; and `actions.csv`, `leads.csv`, `reps.csv`, `teams.csv` (spreadsheet-safe).
The auditors' view in the Airflow UI (Browse, Lead hygiene audit, weekly reviews) serves them.
"""

with DAG(
    dag_id="slowburn_weekly_review",
    schedule="0 6 * * 1",
    start_date=pendulum.datetime(2026, 1, 5, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["slowburn", "leads", "report"],
    doc_md=DOC,
    default_args={"retries": int(os.environ.get("SLOWBURN_RETRIES", "2")), "retry_delay": timedelta(minutes=5),
                  "owner": "data-eng"},
) as dag:

    @task(task_id="weekly_review")
    def weekly_review(warehouse_conn_id: str = "slowburn_warehouse", **context) -> dict:
        """Write the review for the week of the run's logical date; XCom gets counts and paths only."""
        from pathlib import Path

        import pandas as pd

        from slowburn.airflow.hooks import SlowburnWarehouseHook
        from slowburn.report.review import write_weekly_review
        from slowburn.warehouse import Warehouse

        when = context.get("logical_date") or context["dag_run"].run_after
        home = Path(os.environ.get("SLOWBURN_HOME", ".slowburn"))
        wh = Warehouse(SlowburnWarehouseHook(warehouse_conn_id).sqlalchemy_url())
        headline = write_weekly_review(wh, home / "reviews", pd.Timestamp(when))
        return {k: v for k, v in headline.items() if k != "follow_up_depth"}

    weekly_review()
