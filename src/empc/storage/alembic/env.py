"""The Alembic environment of every empc schema.

empc runs it itself (``Database.open``, ``python -m empc migrate``) with
``config.attributes`` holding the open ``connection`` (inside the
transaction of the migration) and the :class:`~empc.storage.Schema`: its
metadata is the target, and its version table records its revision.
Autogenerate compares the schema's own tables only.
"""

from __future__ import annotations

from typing import Any

from alembic import context

config = context.config
if "connection" not in config.attributes or "schema" not in config.attributes:
    raise RuntimeError(
        "empc's Alembic environment takes the connection and the schema from "
        "config.attributes: run migrations with python -m empc migrate"
    )
connection = config.attributes["connection"]
schema = config.attributes["schema"]


def _own_table(item: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    """Whether autogenerate looks at it: only this schema's tables."""
    return kind != "table" or name in schema.metadata.tables


context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    version_table=schema.version_table,
    include_object=_own_table,
    # SQLite alters tables by copying them: let batch operations do that.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():  # the caller's: nothing of its own
    context.run_migrations()
