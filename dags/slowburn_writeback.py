"""slowburn_writeback: scores, queues, owners, tasks and nurture tags back to Salesforce, HubSpot and Mailchimp.

Runs whenever slowburn_nightly's load publishes the `slowburn_lead_queues` asset. Parsing this file imports
only Airflow and the connector hooks; the clients and pandas load inside the task.
"""
from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, Param

from slowburn.airflow.connectors import SlowburnWritebackOperator

LEAD_QUEUES = Asset(name="slowburn_lead_queues", uri="slowburn://warehouse/lead_queues", group="slowburn")

DOC = """
### slowburn write-back
Triggered by the `slowburn_lead_queues` asset (the nightly load). Writes from the warehouse state tables:

* **Salesforce** (`salesforce_default`): score, tier, queue, segment, respond-by and owner on each Lead/Contact
  (sObject Collections, Bulk API 2.0 past 10k rows); a follow-up Task per sales-queue lead and a Task per flag,
  upserted by `Slowburn_Key__c`.
* **HubSpot** (`hubspot_default`): the same properties on contacts (`batch/update`), tasks by `slowburn_key`
  (`batch/upsert`) associated with their contact.
* **Mailchimp** (`mailchimp_default`, extra `list_id`): nurture leads upserted with `status_if_new` and tagged
  with their segment; opted-out, bounced and unsubscribed people are never subscribed.

Idempotent: `writeback_log` keeps a payload hash per record, so a re-run sends nothing already sent and a failed
run resumes where it stopped. Trigger with `dry_run: true` to write the plan to `$SLOWBURN_HOME/writeback/`
without sending anything. Targets without a Connection are skipped.
"""

with DAG(
    dag_id="slowburn_writeback",
    schedule=[LEAD_QUEUES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["slowburn", "leads", "writeback"],
    doc_md=DOC,
    params={"dry_run": Param(False, type="boolean", description="plan only: send and log nothing"),
            "targets": Param(["salesforce", "hubspot", "mailchimp"], type="array",
                             description="which vendors to write to")},
    default_args={"retries": int(os.environ.get("SLOWBURN_RETRIES", "2")), "retry_delay": timedelta(minutes=5),
                  "retry_exponential_backoff": True, "owner": "data-eng"},
) as dag:
    SlowburnWritebackOperator(task_id="writeback", dry_run="{{ params.dry_run }}", targets="{{ params.targets }}")
