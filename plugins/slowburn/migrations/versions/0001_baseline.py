"""Baseline: the warehouse as include/sql/schema.sql made it before migrations.

Frozen: later changes are later revisions. A warehouse made by schema.sql (tables, no version row)
is adopted here: missing tables are created and missing columns added (nullable, since old rows have
no value for them), as schema.sql's loader did; alembic then records 0001 and the later revisions run.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""
import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger("slowburn.migrations")

TS = sa.Text().with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
BOOL = sa.Integer().with_variant(sa.Boolean(), "postgresql")
FLOAT = sa.REAL().with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
INT, TEXT = sa.Integer, sa.Text


def c(name, type_=TEXT, nullable=True, **kw):
    return sa.Column(name, type_() if isinstance(type_, type) else type_, nullable=nullable, **kw)


def nn(name, type_=TEXT):
    return c(name, type_, nullable=False)


def texts(names: str):
    return [c(n) for n in names.split()]


def baseline() -> sa.MetaData:
    m = sa.MetaData()
    sa.Table("run_ledger", m, c("run_id", primary_key=True), nn("logical_date", TS), nn("status"),
             c("started_at", TS), c("finished_at", TS),
             *[nn(n, INT) for n in "landed_leads linked_leads quarantined_leads golden_leads landed_touches "
                                   "quarantined_touches sales_queue nurture_queue lead_flags".split()],
             nn("invariant_ok", BOOL), nn("step_counts"), c("attempt", INT), c("attempt_token"),
             c("scored_leads", INT), c("queued_leads", INT), c("not_queued_leads", INT))
    sa.Table("run_lock", m, c("lock_name", primary_key=True), nn("run_id"), nn("attempt", INT), nn("token"),
             nn("holder"), nn("acquired_at", TS), nn("heartbeat_at", TS))
    sa.Table("queue_history", m, nn("run_id"), nn("queue"), nn("golden_id"), c("owner_id"), c("queued_at", TS),
             c("ripened_at", TS), c("respond_by", TS), c("pass_back", BOOL), c("pass_back_reason"),
             c("score", INT), c("tier"), c("sla_missed_at", TS), c("missed_owner_id"), c("next_touch_at", TS),
             sa.PrimaryKeyConstraint("run_id", "queue", "golden_id"))
    sa.Table("source_watermarks", m, nn("run_id"), nn("logical_date", TS), nn("source_name"),
             c("high_watermark"), nn("rows_landed", INT), sa.PrimaryKeyConstraint("run_id", "source_name"),
             sa.Index("ix_watermarks_source", "source_name", "logical_date"))
    sa.Table("landed_leads", m, nn("run_id"), nn("row_key"), nn("source_name"), nn("row_number", INT),
             nn("row_hash"),
             *texts("source_system source_id first_name last_name email phone company title website street city "
                    "state postcode country owner_id status stage lead_source created_at updated_at "
                    "last_activity_at email_opt_out do_not_call malformed_line attributes"),
             sa.PrimaryKeyConstraint("run_id", "row_key"))
    sa.Table("current_leads", m, nn("run_id"), nn("row_key"), c("source_name"), nn("source_system"),
             nn("source_id"),
             *texts("first_name last_name email phone company title website street city state postcode country "
                    "owner_id status stage lead_source"),
             c("created_at", TS), c("updated_at", TS), c("last_activity_at", TS), c("email_opt_out", BOOL),
             c("do_not_call", BOOL),
             *texts("email_canonical email_tag email_domain phone_e164 first_name_norm last_name_norm "
                    "company_norm country_code attributes"),
             sa.PrimaryKeyConstraint("source_system", "source_id"))
    sa.Table("touches", m, nn("run_id"), nn("row_key"),
             *texts("source_system lead_source_id golden_id touch_type channel campaign"),
             c("occurred_at", TS), c("actor"), c("value", FLOAT), sa.PrimaryKeyConstraint("run_id", "row_key"))
    sa.Table("quarantine", m, nn("run_id"), nn("entity"), nn("row_key"), c("source_system"), c("source_id"),
             nn("rule"), c("column_name"), c("value"), nn("reason"),
             sa.Index("ix_quarantine_run", "run_id", "rule"))
    sa.Table("golden_leads", m, nn("run_id"), nn("golden_id"),
             *texts("first_name last_name email email_canonical phone_e164 company title website street city "
                    "state postcode country_code owner_id status stage lead_source"),
             c("created_at", TS), c("updated_at", TS), c("last_activity_at", TS), c("email_opt_out", BOOL),
             c("do_not_call", BOOL), nn("source_count", INT), nn("source_keys"),
             *texts("provenance members merged_from review_reason attributes"),
             sa.PrimaryKeyConstraint("run_id", "golden_id"))
    sa.Table("lead_links", m, nn("run_id"), nn("row_key"), nn("source_system"), nn("source_id"), nn("golden_id"),
             nn("match_probability", FLOAT), nn("match_rule"), *texts("match_model previous_golden_id review_reason"),
             sa.PrimaryKeyConstraint("run_id", "row_key"))
    sa.Table("lead_scores", m, nn("run_id"), nn("golden_id"), nn("score", INT), nn("tier"), c("probability", FLOAT),
             nn("reasons"), nn("model_version"), nn("touches", INT), nn("rep_touches", INT), c("last_touch_at", TS),
             nn("scored_at", TS), c("scorer"), c("fit", INT), c("engagement", INT), c("rules_score", INT),
             c("last_rep_touch_at", TS), c("last_marketing_touch_at", TS), c("interest"),
             sa.PrimaryKeyConstraint("run_id", "golden_id"))
    sa.Table("sales_queue", m, nn("run_id"), nn("golden_id"), c("owner_id"), nn("owner_kept", BOOL),
             nn("over_capacity", BOOL), nn("score", INT), nn("tier"), nn("reasons"), nn("queued_at", TS),
             nn("respond_by", TS), c("probability", FLOAT), c("model_version"), c("ripened_at", TS),
             c("responded", BOOL), c("pass_back", BOOL), c("pass_back_reason"),
             sa.PrimaryKeyConstraint("run_id", "golden_id"))
    sa.Table("nurture_queue", m, nn("run_id"), nn("golden_id"), nn("segment"), nn("cadence_days", INT),
             nn("next_touch_at", TS), nn("touches_so_far", INT), nn("score", INT), nn("tier"),
             nn("email_opt_out", BOOL), c("channel"), c("buying_stage"), c("interest"), c("probability", FLOAT),
             c("sla_missed", BOOL), c("sla_missed_at", TS), c("missed_owner_id"),
             sa.PrimaryKeyConstraint("run_id", "golden_id"))
    sa.Table("lead_flags", m, nn("run_id"), nn("golden_id"), nn("flag"), nn("severity"), c("owner_id"),
             nn("evidence"), nn("reason"), nn("suggested_action"), c("status"), c("opened_at", TS),
             c("closed_at", TS), c("first_run_id"), c("last_seen_run_id"),
             sa.PrimaryKeyConstraint("run_id", "golden_id", "flag"))
    sa.Table("owners", m, nn("run_id"), nn("owner_id"), c("name"), c("email"), c("active", BOOL),
             c("deactivated_at", TS), c("team"), c("territory"), c("daily_capacity", INT),
             sa.PrimaryKeyConstraint("run_id", "owner_id"))
    sa.Table("outcomes", m, nn("run_id"), nn("source_system"), nn("source_id"), c("outcome"), c("closed_at", TS),
             c("amount", FLOAT), sa.Index("ix_outcomes_run", "run_id"))
    sa.Table("writeback_log", m, nn("target"), nn("record_key"), nn("payload_hash"), nn("run_id"),
             nn("sent_at", TS), nn("status"), c("action"), c("golden_id"), c("payload"), c("latest", BOOL),
             c("batch_id"), c("error"), sa.PrimaryKeyConstraint("target", "record_key", "payload_hash"))
    sa.Table("writeback_batches", m, c("batch_id", primary_key=True), nn("run_id"), nn("target"), nn("action"),
             nn("records", INT), nn("status"), nn("started_at", TS), c("finished_at", TS), c("sent", INT),
             c("failed", INT), c("error"))
    return m


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    existing = set(insp.get_table_names())
    for table in baseline().sorted_tables:
        if table.name not in existing:
            table.create(bind)
            continue
        # Adopting a warehouse made by schema.sql: what an older schema.sql lacked is added.
        have = {col["name"] for col in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have:
                log.warning("warehouse: adding column %s.%s", table.name, col.name)
                op.add_column(table.name, sa.Column(col.name, col.type, nullable=True))
        indexes = {ix["name"] for ix in insp.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)


def downgrade() -> None:
    for table in reversed(baseline().sorted_tables):
        op.drop_table(table.name)
