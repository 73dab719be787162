"""Tweeter: the post counter holds 64-bit numbers.

Revision ID: tweeter_0002
Revises: tweeter_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "tweeter_0002"
down_revision = "tweeter_0001"
branch_labels = None
depends_on = None


def _counter_type(new: type[sa.Integer], old: type[sa.Integer]) -> None:
    # SQLite's INTEGER already holds 64 bits (and alters no column type).
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "tweeter_counters", "value", type_=new, existing_type=old, existing_nullable=False
        )


def upgrade() -> None:
    _counter_type(sa.BigInteger, sa.Integer)


def downgrade() -> None:
    _counter_type(sa.Integer, sa.BigInteger)
