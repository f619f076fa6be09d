"""Reasons become their own state table, lead_reasons.

A score moves every night as engagement decays, but the reasons of a lead whose inputs did not change
do not: kept in lead_scores, each nightly score change rewrote a kilobyte of reasons (a quarter of a
million rows a night at a million leads). lead_reasons keeps them with the score they sum to
(reasons_score) and when they were computed (reasons_at); the load writes only the leads explained
that night.

Each lead's stored reasons move over with its score as reasons_score (they summed to it, a time
factor included) and scored_at as reasons_at, then lead_scores drops the column. The downgrade puts
them back (a lead without stored reasons gets '[]').

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.Text().with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")


def upgrade() -> None:
    op.create_table("lead_reasons",
                    sa.Column("run_id", sa.Text(), nullable=False), sa.Column("golden_id", sa.Text(), nullable=False),
                    sa.Column("reasons", sa.Text(), nullable=False),
                    sa.Column("reasons_score", sa.Integer(), nullable=False),
                    sa.Column("reasons_at", TS, nullable=False), sa.Column("model_version", sa.Text(), nullable=False),
                    sa.Column("row_digest", sa.BigInteger(), nullable=True),
                    sa.PrimaryKeyConstraint("golden_id"))
    op.create_index("ix_lead_reasons_run", "lead_reasons", ["run_id"])
    op.execute("INSERT INTO lead_reasons (run_id, golden_id, reasons, reasons_score, reasons_at, model_version) "
               "SELECT run_id, golden_id, reasons, score, scored_at, model_version FROM lead_scores "
               "WHERE reasons IS NOT NULL")
    with op.batch_alter_table("lead_scores") as batch:
        batch.drop_column("reasons")


def downgrade() -> None:
    with op.batch_alter_table("lead_scores") as batch:
        batch.add_column(sa.Column("reasons", sa.Text(), nullable=False, server_default="[]"))
    op.execute("UPDATE lead_scores SET reasons = (SELECT r.reasons FROM lead_reasons r "
               "WHERE r.golden_id = lead_scores.golden_id) "
               "WHERE golden_id IN (SELECT golden_id FROM lead_reasons)")
    op.drop_index("ix_lead_reasons_run", "lead_reasons")
    op.drop_table("lead_reasons")
