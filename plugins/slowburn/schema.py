"""The warehouse schema: one SQLAlchemy MetaData, the model the Alembic migrations (slowburn/migrations) build.

Table names are a public contract (see DESIGN.md). Tables that mirror a contract take their columns
from slowburn.contracts, so a contract column cannot be forgotten here; the others are spelled out.
Every run-scoped table carries run_id: a run's load replaces its own rows in one transaction, so
re-running a logical date replaces its rows and never doubles them.

The stored representation is the loaders' (they write with plain SQL, COPY and Python tuples, not
through these types): on SQLite timestamps are ISO-8601 TEXT ('YYYY-MM-DDTHH:MM:SS', UTC), booleans
INTEGER 0/1 and floats REAL; on PostgreSQL TIMESTAMP WITH TIME ZONE, BOOLEAN and DOUBLE PRECISION.

Changing this file means writing a migration: `tests/migrations/test_schema.py` fails while the migrations'
result and this MetaData differ.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from slowburn import contracts

TS = sa.Text().with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
BOOL = sa.Integer().with_variant(sa.Boolean(), "postgresql")
FLOAT = sa.REAL().with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
KIND_TYPES = {contracts.STRING: sa.Text(), contracts.DATETIME: TS, contracts.BOOL: BOOL,
              contracts.INT: sa.Integer(), contracts.FLOAT: FLOAT}

metadata = sa.MetaData()


def _col(name: str, type_=None, *, nullable: bool = True, comment: str | None = None, **kw) -> sa.Column:
    return sa.Column(name, type_ if type_ is not None else sa.Text(), nullable=nullable, comment=comment, **kw)


def _nn(name: str, type_=None, **kw) -> sa.Column:
    return _col(name, type_, nullable=False, **kw)


def _from_contract(columns, *, as_text: bool = False, not_null=(), skip=(), after=None) -> list[sa.Column]:
    """Columns for contract columns, typed by kind (or all TEXT, as landed); `after` splices extra
    columns in after a named one, so the table keeps the column order it has always had."""
    out = []
    for c in columns:
        if c.name in skip:
            continue
        out.append(_col(c.name, sa.Text() if as_text else KIND_TYPES[c.kind], nullable=c.name not in not_null,
                        comment=c.doc or None))
        out.extend((after or {}).get(c.name, ()))
    return out


def _lead_like(*names: str) -> list[sa.Column]:
    """Columns named after normalised-lead contract columns, typed by the contract."""
    return [_col(n, KIND_TYPES[contracts.NORMALISED_LEADS.column(n).kind]) for n in names]


ROW_DIGEST = "a hash of the row's stored values: the load rewrites a row only when its digest changes"


def _digest() -> sa.Column:
    return _col("row_digest", sa.BigInteger(), comment=ROW_DIGEST)


# ------------------------------------------------------------------------------------------ run bookkeeping

sa.Table(
    "run_ledger", metadata,
    # As schema.sql had it: TEXT PRIMARY KEY without NOT NULL (SQLite then allows NULL; PostgreSQL does not).
    _col("run_id", primary_key=True),
    _nn("logical_date", TS), _nn("status"), _col("started_at", TS), _col("finished_at", TS),
    *[_nn(n, sa.Integer()) for n in ("landed_leads", "linked_leads", "quarantined_leads", "golden_leads",
                                     "landed_touches", "quarantined_touches", "sales_queue", "nurture_queue",
                                     "lead_flags")],
    _nn("invariant_ok", BOOL), _nn("step_counts"),
    _col("attempt", sa.Integer(), comment="the attempt that loaded the run: its folder runs/<run_id>/attempt-<n>"),
    _col("attempt_token", comment="the token the attempt stamped on every step output"),
    _col("scored_leads", sa.Integer(), comment="every golden lead is scored once: scored_leads = golden_leads"),
    _col("queued_leads", sa.Integer(), comment="queued_leads + not_queued_leads = golden_leads, no lead in "
                                               "both queues; invariant_ok holds only when both proofs hold"),
    _col("not_queued_leads", sa.Integer()),
)

sa.Table(
    "run_lock", metadata,
    _col("lock_name", primary_key=True),  # nullable on SQLite, as schema.sql had it
    _nn("run_id"), _nn("attempt", sa.Integer()), _nn("token"), _nn("holder"), _nn("acquired_at", TS),
    _nn("heartbeat_at", TS),
    comment="At most one run writes the warehouse at a time. The extract step takes the lock, every later "
            "step renews it (heartbeat_at), and the load releases it in the transaction that commits the run. "
            "A newer attempt of the same run takes it over; a lock without a heartbeat for "
            "SLOWBURN_LOCK_STALE_MINUTES (default 120) is taken over by the next run, with a warning.",
)

sa.Table(
    "queue_history", metadata,
    _nn("run_id"), _nn("queue"), _nn("golden_id"), _col("owner_id"), _col("queued_at", TS),
    _col("ripened_at", TS), _col("respond_by", TS), _col("pass_back", BOOL), _col("pass_back_reason"),
    _col("score", sa.Integer()), _col("tier"), _col("sla_missed_at", TS), _col("missed_owner_id"),
    _col("next_touch_at", TS),
    _col("change", comment="before-images of queue rows a run changed: 'before' holds the row as it was, "
                           "'absent' marks a row the run added; null for the run's own queue rows"),
    sa.PrimaryKeyConstraint("run_id", "queue", "golden_id"),
    comment="What each run's routing left in the queues, kept per run: the next run routes against the "
            "previous run's rows here (owners kept, leads already queued), so a lost run folder cannot "
            "re-queue leads.",
)

sa.Table(
    "source_watermarks", metadata,
    _nn("run_id"), _nn("logical_date", TS), _nn("source_name"), _col("high_watermark"),
    _nn("rows_landed", sa.Integer()),
    sa.PrimaryKeyConstraint("run_id", "source_name"),
    sa.Index("ix_watermarks_source", "source_name", "logical_date"),
)

# ------------------------------------------------------------------------------------------ leads and touches

_ATTRIBUTES_LANDED = "custom vendor fields as a JSON object of text, as landed (sources file `attributes:`)"

sa.Table(
    "landed_leads", metadata,
    _nn("run_id"), _nn("row_key"), _nn("source_name"), _nn("row_number", sa.Integer()), _nn("row_hash"),
    *_from_contract(contracts.LEADS.columns, as_text=True, skip=("attributes",)),
    _col("malformed_line"),
    _col("attributes", comment=_ATTRIBUTES_LANDED),
    sa.PrimaryKeyConstraint("run_id", "row_key"),
)

_NORMALISED = [c for c in contracts.NORMALISED_LEAD_COLUMNS if c.name != "row_key"]
sa.Table(
    "current_leads", metadata,
    _nn("run_id"), _nn("row_key"), _col("source_name"),
    *_from_contract(contracts.LEADS.columns + tuple(_NORMALISED), not_null=contracts.LEADS.key,
                    skip=("attributes",), after={"email_tag": [_col("email_domain")]}),
    _col("attributes", comment=contracts.LEADS.column("attributes").doc),
    _digest(),
    sa.PrimaryKeyConstraint("source_system", "source_id"),
    sa.Index("ix_current_leads_run", "run_id"),
    comment="The latest valid, normalised version of every source lead seen so far: what tonight's dedupe, "
            "scoring and flags work on, so that a lead that never changes still gets scored and flagged.",
)

sa.Table(
    "touches", metadata,
    _nn("run_id"), _nn("row_key"),
    *_from_contract(contracts.TOUCHES.columns, after={"lead_source_id": [_col("golden_id")]}),
    sa.PrimaryKeyConstraint("run_id", "row_key"),
)

sa.Table(
    "quarantine", metadata,
    _nn("run_id"), _nn("entity"), _nn("row_key"), _col("source_system"), _col("source_id"), _nn("rule"),
    _col("column_name"), _col("value"), _nn("reason"),
    sa.Index("ix_quarantine_run", "run_id", "rule"),
)

# ------------------------------------------------------------------------------------------ golden records

sa.Table(
    "golden_leads", metadata,
    _nn("run_id"), _nn("golden_id"),
    *_lead_like("first_name", "last_name", "email", "email_canonical", "phone_e164", "company", "title",
                "website", "street", "city", "state", "postcode", "country_code", "owner_id", "status", "stage",
                "lead_source", "created_at", "updated_at", "last_activity_at", "email_opt_out", "do_not_call"),
    _nn("source_count", sa.Integer()), _nn("source_keys"),
    _col("provenance", comment="lineage (slowburn.dedupe.survivorship): a JSON object naming, per field, the "
                               "source row (source_system:source_id) its value came from"),
    _col("members", comment="a merged record's source rows (key, lead_source, owner_id, created_at)"),
    _col("merged_from", comment="golden ids absorbed into this one by this run"),
    _col("review_reason", comment="why a person should look at the record (e.g. the chaining guard)"),
    _col("attributes", comment="custom attributes merged per key across the record's source rows, the most "
                               "recent row winning"),
    _digest(),
    sa.PrimaryKeyConstraint("golden_id"),
    sa.Index("ix_golden_leads_run", "run_id"),
)

sa.Table(
    "lead_links", metadata,
    _nn("run_id"), _nn("row_key"), _nn("source_system"), _nn("source_id"), _nn("golden_id"),
    _nn("match_probability", FLOAT), _nn("match_rule"),
    _col("match_model", comment="Splink model fingerprint and whether it was trained or reused, or "
                                "'deterministic'"),
    _col("previous_golden_id", comment="the row's golden id before this run when it changed (merges, moves)"),
    _col("review_reason"),
    _digest(),
    sa.PrimaryKeyConstraint("source_system", "source_id"),
    sa.Index("ix_lead_links_run", "run_id"),
)

# ------------------------------------------------------------------------------------------ scores, queues, flags

sa.Table(
    "lead_scores", metadata,
    _nn("run_id"), _nn("golden_id"), _nn("score", sa.Integer()), _nn("tier"), _col("probability", FLOAT),
    _nn("model_version"), _nn("touches", sa.Integer()), _nn("rep_touches", sa.Integer()),
    _col("last_touch_at", TS), _nn("scored_at", TS), _col("scorer"), _col("fit", sa.Integer()),
    _col("engagement", sa.Integer()), _col("rules_score", sa.Integer()), _col("last_rep_touch_at", TS),
    _col("last_marketing_touch_at", TS), _col("interest"),
    _digest(),
    sa.PrimaryKeyConstraint("golden_id"),
    sa.Index("ix_lead_scores_run", "run_id"),
    comment="Each golden lead's latest score; score_history keeps the runs where score or tier changed.",
)

sa.Table(
    "lead_reasons", metadata,
    _nn("run_id"), _nn("golden_id"), _nn("reasons"), _nn("reasons_score", sa.Integer()), _nn("reasons_at", TS),
    _nn("model_version"),
    _digest(),
    sa.PrimaryKeyConstraint("golden_id"),
    sa.Index("ix_lead_reasons_run", "run_id"),
    comment="Each scored lead's reasons (JSON: factor and points, largest first), which sum to reasons_score, "
            "its score when they were computed (reasons_at, by model_version). They are recomputed only when "
            "the lead's inputs or the model change: where the score has since moved with time, the difference "
            "is the days passed (slowburn.ripeness.reasons.reasons_now adds it as a factor).",
)

sa.Table(
    "score_history", metadata,
    _nn("golden_id"), _nn("run_id"), _col("score", sa.Integer()), _col("tier"), _col("probability", FLOAT),
    _col("model_version"), _col("scored_at", TS),
    sa.PrimaryKeyConstraint("golden_id", "run_id"),
    sa.Index("ix_score_history_run", "run_id"),
    comment="A golden lead's score and tier, one row per run where either changed (the first score always).",
)

sa.Table(
    "sales_queue", metadata,
    _nn("run_id"), _nn("golden_id"), _col("owner_id"), _nn("owner_kept", BOOL), _nn("over_capacity", BOOL),
    _nn("score", sa.Integer()), _nn("tier"), _nn("reasons"), _nn("queued_at", TS), _nn("respond_by", TS),
    _col("probability", FLOAT), _col("model_version"), _col("ripened_at", TS), _col("responded", BOOL),
    _col("pass_back", BOOL), _col("pass_back_reason"),
    _digest(),
    sa.PrimaryKeyConstraint("golden_id"),
    sa.Index("ix_sales_queue_run", "run_id"),
)

sa.Table(
    "nurture_queue", metadata,
    _nn("run_id"), _nn("golden_id"), _nn("segment"), _nn("cadence_days", sa.Integer()), _nn("next_touch_at", TS),
    _nn("touches_so_far", sa.Integer()), _nn("email_opt_out", BOOL),
    _col("channel"), _col("buying_stage"), _col("interest"), _col("sla_missed", BOOL),
    _col("sla_missed_at", TS), _col("missed_owner_id"),
    _digest(),
    sa.PrimaryKeyConstraint("golden_id"),
    sa.Index("ix_nurture_queue_run", "run_id"),
    comment="Each open lead not in the sales queue: its segment and next touch. Its score and tier are in "
            "lead_scores (not copied here, so decay does not rewrite the queue every night).",
)

sa.Table(
    "lead_flags", metadata,
    _nn("run_id"), _nn("golden_id"), _nn("flag"), _nn("severity"), _col("owner_id"), _nn("evidence"), _nn("reason"),
    _nn("suggested_action"),
    _col("status", comment="lifecycle (slowburn.flags.track_flags): open, or closed once a run no longer finds "
                           "the flag's cause"),
    _col("opened_at", TS, comment="when the flag was first raised"),
    _col("closed_at", TS, comment="when a run no longer found it"),
    _nn("first_run_id", comment="the run that first found it; with golden_id and flag, the flag's key"),
    _col("last_seen_run_id", comment="the run that last found it"),
    _digest(),
    sa.PrimaryKeyConstraint("golden_id", "flag", "first_run_id"),
    sa.Index("ix_lead_flags_run", "run_id"),
)

# ------------------------------------------------------------------------------------------ owners and outcomes

sa.Table(
    "owners", metadata,
    _nn("run_id"),
    *_from_contract(contracts.OWNERS.columns, not_null=contracts.OWNERS.key),
    sa.PrimaryKeyConstraint("run_id", "owner_id"),
)

sa.Table(
    "outcomes", metadata,
    _nn("run_id"),
    *_from_contract(contracts.OUTCOMES_CONTRACT.columns, not_null=contracts.OUTCOMES_CONTRACT.key),
    _digest(),
    sa.PrimaryKeyConstraint("source_system", "source_id"),
    sa.Index("ix_outcomes_run", "run_id"),
)

# ------------------------------------------------------------------------------------------ write-back

sa.Table(
    "writeback_log", metadata,
    _nn("target"), _nn("record_key"), _nn("payload_hash"), _nn("run_id"), _nn("sent_at", TS),
    _nn("status", comment="sent or failed (failed rows are retried next run)"),
    _col("action", comment="the write: update, task, member or tags"),
    _col("golden_id"),
    _col("payload", comment="the state sent, as JSON"),
    _col("latest", BOOL),
    _col("batch_id", comment="the writeback_batches row that carried it"),
    _col("error"),
    sa.PrimaryKeyConstraint("target", "record_key", "payload_hash"),
    comment="What slowburn.writeback sent where: one row per record and payload hash. A re-run skips every "
            "record whose `latest` row carries the hash it would send, so nothing already sent is sent again.",
)

sa.Table(
    "writeback_batches", metadata,
    _col("batch_id", primary_key=True),  # nullable on SQLite, as schema.sql had it
    _nn("run_id"), _nn("target"), _nn("action"), _nn("records", sa.Integer()), _nn("status"),
    _nn("started_at", TS), _col("finished_at", TS), _col("sent", sa.Integer()), _col("failed", sa.Integer()),
    _col("error"),
    comment="The resume ledger of write-back: a batch is 'sending' from just before it goes out until its "
            "acknowledged records are logged ('done'); 'failed' when the vendor refused it as a whole.",
)


def sync_comments(connection) -> None:
    """Give the database the table and column comments written here (PostgreSQL; SQLite keeps none).

    Comments document lineage fields for auditors (\\d+ in psql); they are not structure, so the
    migrations leave them to this one place and every upgrade brings them up to date.
    """
    if not connection.dialect.supports_comments:
        return
    insp = sa.inspect(connection)
    present = set(insp.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in present:  # an upgrade to an older revision
            continue
        if (insp.get_table_comment(table.name).get("text") or None) != table.comment:
            connection.execute(sa.schema.SetTableComment(table) if table.comment
                               else sa.schema.DropTableComment(table))
        have = {c["name"]: c.get("comment") for c in insp.get_columns(table.name)}
        for column in table.columns:
            if column.name in have and (have[column.name] or None) != column.comment:
                connection.execute(sa.schema.SetColumnComment(column) if column.comment
                                   else sa.schema.DropColumnComment(column))
