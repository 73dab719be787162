"""Tweeter: follows, follow requests, profiles and the post counter.

Revision ID: tweeter_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "tweeter_0001"
down_revision = None
branch_labels = ("tweeter",)
depends_on = None


def _pair(table: str, first: str, second: str) -> None:
    op.create_table(
        table,
        sa.Column(first, sa.Text, primary_key=True),
        sa.Column(second, sa.Text, primary_key=True),
    )


def upgrade() -> None:
    _pair("tweeter_follows", "follower", "followee")
    op.create_index("tweeter_follows_followee", "tweeter_follows", ["followee"])
    _pair("tweeter_follow_requests", "followee", "follower")
    op.create_table(
        "tweeter_profiles",
        sa.Column("jid", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("auto_accept", sa.Boolean, nullable=False),
    )
    counters = op.create_table(
        "tweeter_counters",
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "post", "value": 0}])


def downgrade() -> None:
    for table in ("tweeter_counters", "tweeter_profiles", "tweeter_follow_requests"):
        op.drop_table(table)
    op.drop_index("tweeter_follows_followee", "tweeter_follows")
    op.drop_table("tweeter_follows")
