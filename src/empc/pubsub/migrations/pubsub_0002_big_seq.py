"""PubSub: item numbers (``seq``, ``last_seq``) of 64 bits.

A node that numbers its publications in 32 bits stops taking them after
2**31 - 1 (25 days at 1,000 a second). SQLite's integers have 64 bits
already: PostgreSQL's columns only change.

Revision ID: pubsub_0002
Revises: pubsub_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "pubsub_0002"
down_revision = "pubsub_0001"
branch_labels = None
depends_on = None

_COLUMNS = (("pubsub_nodes", "last_seq"), ("pubsub_items", "seq"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger, existing_type=sa.Integer)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.Integer, existing_type=sa.BigInteger)
