"""slowburn_nightly: sources to sales and nurture queues, every night.

Parsing this file imports only Airflow and the operator class: the pipeline's pandas, GX and
scikit-learn imports happen inside the tasks.
"""
from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset

import slowburn.airflow.connectors  # noqa: F401  (API sources in the sources file read Airflow Connections)
from slowburn.airflow.operators import SlowburnStepOperator

LEAD_QUEUES = Asset(name="slowburn_lead_queues", uri="slowburn://warehouse/lead_queues", group="slowburn")

DOC = """
### slowburn nightly lead hygiene
Pulls leads, touches, owners and outcomes from the sources in `$SLOWBURN_SOURCES`, then:

1. **extract** incrementally from each source's watermark
2. **normalise** emails, phones (E.164), names, companies, countries
3. **validate** with Great Expectations; failing rows go to `quarantine` with rule and reason
4. **dedupe** into one golden lead per person with lineage in `lead_links`
5. **score** ripeness with reasons
6. **route** hot leads to `sales_queue`, the rest to `nurture_queue`
7. **flag** orphaned, unclosed, worked-not-closed, stage-inflated, stale-status, SLA-breach,
   dropped-follow-up and duplicate-for-credit leads; flags stay open until their cause is gone
8. **load** everything in one transaction; `run_ledger` proves landed = linked + quarantined
9. **summarize** into summary.json / summary.html in the run folder

Re-running a logical date replaces that run's rows. Every try of **extract** starts a new attempt
folder (`runs/<run>/attempt-<n>`); later tasks work in the attempt their extract started, and the load
refuses files from any other attempt. The extract takes the warehouse run lock (a second run at the same
time stops with `RunLocked`), pulls source changes only up to the data interval's end, and refuses a
logical date older than the newest loaded run. The load releases the lock as it commits.
The warehouse is the `slowburn_warehouse` Connection (embedded SQLite when it is not defined).
The load publishes the `slowburn_lead_queues` asset.
"""

with DAG(
    dag_id="slowburn_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["slowburn", "leads", "hygiene"],
    doc_md=DOC,
    default_args={"retries": int(os.environ.get("SLOWBURN_RETRIES", "2")), "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True,
                  "owner": "data-eng"},
) as dag:
    steps = [SlowburnStepOperator(step=s) for s in ("extract", "normalise", "validate", "dedupe", "score",
                                                     "route", "flag")]
    load = SlowburnStepOperator(step="load", outlets=[LEAD_QUEUES])
    summarize = SlowburnStepOperator(step="summarize")
    for upstream, downstream in zip(steps + [load], steps[1:] + [load, summarize]):
        upstream >> downstream
