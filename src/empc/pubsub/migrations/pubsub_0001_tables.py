"""PubSub: nodes, affiliations, subscriptions and items.

Revision ID: pubsub_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "pubsub_0001"
down_revision = None
branch_labels = ("pubsub",)
depends_on = None


def _node_id() -> sa.Column[int]:
    return sa.Column(
        "node_id",
        sa.Integer,
        sa.ForeignKey("pubsub_nodes.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    op.create_table(
        "pubsub_nodes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("creator", sa.Text),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("access_model", sa.String(16), nullable=False),
        sa.Column("publish_model", sa.String(16), nullable=False),
        sa.Column("max_items", sa.Integer, nullable=False),
        sa.Column("persist_items", sa.Boolean, nullable=False),
        sa.Column("deliver_payloads", sa.Boolean, nullable=False),
        sa.Column("notification_type", sa.String(16), nullable=False),
        sa.Column("send_last_published_item", sa.String(16), nullable=False),
        sa.Column("notify_config", sa.Boolean, nullable=False),
        sa.Column("notify_delete", sa.Boolean, nullable=False),
        sa.Column("notify_retract", sa.Boolean, nullable=False),
    )
    op.create_table(
        "pubsub_affiliations",
        _node_id(),
        sa.Column("jid", sa.Text, primary_key=True),
        sa.Column("affiliation", sa.String(16), nullable=False),
    )
    op.create_index("pubsub_affiliations_jid", "pubsub_affiliations", ["jid"])
    op.create_table(
        "pubsub_subscriptions",
        _node_id(),
        sa.Column("jid", sa.Text, primary_key=True),
        sa.Column("bare", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bounces", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("pubsub_subscriptions_bare", "pubsub_subscriptions", ["bare"])
    op.create_table(
        "pubsub_items",
        _node_id(),
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("publisher", sa.Text),
        sa.Column("published", sa.Float, nullable=False),
    )
    op.create_index("pubsub_items_seq", "pubsub_items", ["node_id", "seq"], unique=True)


def downgrade() -> None:
    for table in ("pubsub_items", "pubsub_subscriptions", "pubsub_affiliations", "pubsub_nodes"):
        op.drop_table(table)
