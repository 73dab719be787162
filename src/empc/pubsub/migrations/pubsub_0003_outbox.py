"""PubSub: the outbox, notifications written with the change that caused
them, until all their messages are out.

Revision ID: pubsub_0003
Revises: pubsub_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "pubsub_0003"
down_revision = "pubsub_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pubsub_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("lease", sa.Float, nullable=False),
    )
    op.create_index("pubsub_outbox_lease", "pubsub_outbox", ["lease"])


def downgrade() -> None:
    op.drop_table("pubsub_outbox")
