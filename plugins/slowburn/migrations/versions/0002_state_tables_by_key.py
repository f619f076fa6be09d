"""State tables change by key.

The load stops rewriting whole tables each night: state tables are keyed by their business key and
carry row_digest (the load upserts a row only when it changed), lead_scores keeps each lead's latest
score with the changes in score_history, lead_flags keeps one row per flag, outcomes one per source
lead, and queue_history can hold before-images (`change`).

Existing rows are thinned to the new keys: score_history gets a lead's row for every run where score
or tier differ from its previous row (its first row always), lead_scores keeps each lead's latest run,
lead_flags the latest run's row per (golden_id, flag, first_run_id) (first_run_id filled from run_id
where empty), outcomes the greatest (run_id, closed_at) per source lead; golden_leads, lead_links and
the queues already hold one picture and are deduplicated by key defensively, the latest run winning.
Thinning loses history, so there is no downgrade: restore a backup instead.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.Text().with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
FLOAT = sa.REAL().with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")

# table: (its primary key from now on, the order that puts the row to keep first within a key)
KEYED = {
    "current_leads": (("source_system", "source_id"), "run_id DESC"),
    "lead_links": (("source_system", "source_id"), "run_id DESC, row_key DESC"),
    "golden_leads": (("golden_id",), "run_id DESC"),
    "lead_scores": (("golden_id",), "run_id DESC"),
    "sales_queue": (("golden_id",), "run_id DESC"),
    "nurture_queue": (("golden_id",), "run_id DESC"),
    "lead_flags": (("golden_id", "flag", "first_run_id"), "run_id DESC"),
    "outcomes": (("source_system", "source_id"), "run_id DESC, closed_at DESC NULLS LAST"),
}


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)

    op.add_column("queue_history", sa.Column("change", sa.Text(), nullable=True))

    op.create_table("score_history",
                    sa.Column("golden_id", sa.Text(), nullable=False), sa.Column("run_id", sa.Text(), nullable=False),
                    sa.Column("score", sa.Integer()), sa.Column("tier", sa.Text()), sa.Column("probability", FLOAT),
                    sa.Column("model_version", sa.Text()), sa.Column("scored_at", TS),
                    sa.PrimaryKeyConstraint("golden_id", "run_id"))
    op.create_index("ix_score_history_run", "score_history", ["run_id"])
    op.execute(
        "INSERT INTO score_history (golden_id, run_id, score, tier, probability, model_version, scored_at) "
        "SELECT golden_id, run_id, score, tier, probability, model_version, scored_at FROM ("
        "  SELECT s.*, ROW_NUMBER() OVER w AS n, LAG(score) OVER w AS previous_score,"
        "         LAG(tier) OVER w AS previous_tier"
        "  FROM lead_scores s WINDOW w AS (PARTITION BY golden_id ORDER BY run_id)) ranked "
        "WHERE n = 1 OR score <> previous_score OR tier <> previous_tier")

    op.execute("UPDATE lead_flags SET first_run_id = run_id WHERE first_run_id IS NULL")
    row_id = "ctid" if bind.dialect.name == "postgresql" else "rowid"
    for table, (key, keep_first) in KEYED.items():
        op.execute(f"DELETE FROM {table} WHERE {row_id} IN (SELECT row_id FROM ("
                   f"SELECT {row_id} AS row_id, ROW_NUMBER() OVER (PARTITION BY {', '.join(key)} "
                   f"ORDER BY {keep_first}) AS n FROM {table}) ranked WHERE n > 1)")
        _rekey(insp, table, key)


def _rekey(insp, table: str, key: tuple) -> None:
    """Add row_digest, make `key` the primary key and index run_id; SQLite rebuilds the table to do it."""
    old = insp.get_pk_constraint(table)
    # SQLite's primary keys are unnamed: the convention names the reflected one so that it can be dropped.
    with op.batch_alter_table(table, naming_convention={"pk": "%(table_name)s_pkey"}) as batch:
        batch.add_column(sa.Column("row_digest", sa.BigInteger(), nullable=True))
        if table == "lead_flags":
            batch.alter_column("first_run_id", existing_type=sa.Text(), nullable=False)
        if tuple(old["constrained_columns"]) != key:
            if old["constrained_columns"]:  # outcomes had none, nor had tables an old schema.sql made
                batch.drop_constraint(old.get("name") or f"{table}_pkey", type_="primary")
            batch.create_primary_key(f"{table}_pkey", list(key))
    if not any(ix["column_names"] == ["run_id"] for ix in insp.get_indexes(table)):
        op.create_index(f"ix_{table}_run", table, ["run_id"])


def downgrade() -> None:
    raise NotImplementedError("0002 thinned lead_scores, lead_flags and outcomes to one row per key; their "
                              "history cannot be rebuilt. Restore the warehouse from a backup taken before "
                              "the upgrade")
