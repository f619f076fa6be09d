"""The nurture queue stops copying each lead's score, tier and probability.

They live in lead_scores. Copied into nurture_queue, every nightly score change from decay rewrote the
lead's nurture row and its before-image in queue_history: at a million leads, 160k nurture rows and
as many before-images a night for values that lead_scores already holds. Readers join lead_scores.

The downgrade puts the columns back, filled from lead_scores (0 and 'cold' for a lead without a score,
which the load never leaves).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FLOAT = sa.REAL().with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("nurture_queue") as batch:
        for column in ("score", "tier", "probability"):
            batch.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("nurture_queue") as batch:
        batch.add_column(sa.Column("score", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tier", sa.Text(), nullable=False, server_default="cold"))
        batch.add_column(sa.Column("probability", FLOAT, nullable=True))
    for column in ("score", "tier", "probability"):
        op.execute(f"UPDATE nurture_queue SET {column} = (SELECT s.{column} FROM lead_scores s "
                   "WHERE s.golden_id = nurture_queue.golden_id) "
                   "WHERE golden_id IN (SELECT golden_id FROM lead_scores)")
