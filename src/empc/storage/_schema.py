"""Schemas (a building block's tables) and their Alembic migrations.

Each schema keeps its revision in a version table of its own,
``<name>_alembic_version``: schemas are migrated independently, and a
database shared by several applications, or one whose handlers change,
never mistakes another schema's revision for an unknown one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData

ENVIRONMENT = Path(__file__).with_name("alembic")
"""The Alembic environment (``env.py``) every schema's migrations run in."""

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class StorageError(Exception):
    """The storage cannot be used as configured: a bad url, a schema newer
    than the code, a migration that failed. Not a stanza error: it stops
    the process at start-up."""


class Schema:
    """A building block's or an application's tables and their Alembic migrations.

    :param name: a short unique label, e.g. ``pubsub``: it names the
        schema's version table (``pubsub_alembic_version``) and may be the
        branch label of its first revision. Lowercase letters, digits and
        ``_``, starting with a letter.
    :param metadata: the schema's tables (names prefixed, e.g. ``pubsub_nodes``).
    :param migrations: the directory of its Alembic revision files; the
        first revision has ``down_revision = None``.
    :raises ValueError: for a name that is not such a label, or a
        migrations directory that does not exist.
    """

    def __init__(self, name: str, metadata: MetaData, migrations: str | Path) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"a schema name is a-z, 0-9 and _, starting with a letter: {name!r}")
        if not Path(migrations).is_dir():
            raise ValueError(f"schema {name}: no migrations directory {migrations}")
        self.name = name
        self.metadata = metadata
        self.migrations = Path(migrations)

    @property
    def version_table(self) -> str:
        return f"{self.name}_alembic_version"

    def __repr__(self) -> str:
        return f"Schema({self.name!r}, migrations={str(self.migrations)!r})"


def schemas_of(handlers: Iterable[object]) -> list[Schema]:
    """The schemas ``handlers`` declare (their class attribute ``schemas``),
    each once, in order."""
    found: dict[int, Schema] = {}
    for handler in handlers:
        for schema in getattr(handler, "schemas", ()):
            found.setdefault(id(schema), schema)
    return list(found.values())


def upgrade(connection: Connection, schema: Schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Migrate ``schema`` to its head revisions, on ``connection`` (in the
    caller's transaction). Returns the revisions before and after.

    :raises StorageError: if the database has a revision the migrations do
        not know (written by newer code), or the migrations are broken.
    """
    script = _script(schema)
    before = _current(connection, schema)
    for revision in before:
        try:
            script.get_revision(revision)
        except CommandError:
            raise StorageError(
                f"schema {schema.name}: the database is at revision {revision}, which this "
                f"code does not know (written by a newer version?): not starting, so as not "
                f"to break it; run the newer code or restore a backup"
            ) from None
    config = Config()
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema

    def steps(revision: str, context: MigrationContext) -> object:
        return script._upgrade_revs("heads", revision)  # what alembic's upgrade command does

    try:
        with EnvironmentContext(config, script, fn=steps, destination_rev="heads"):
            script.run_env()
    except CommandError as e:
        raise StorageError(f"schema {schema.name}: migrations failed: {e}") from None
    return before, _current(connection, schema)


def _script(schema: Schema) -> ScriptDirectory:
    try:
        return ScriptDirectory(str(ENVIRONMENT), version_locations=[str(schema.migrations)])
    except CommandError as e:
        raise StorageError(f"schema {schema.name}: {e}") from None


def _current(connection: Connection, schema: Schema) -> tuple[str, ...]:
    context = MigrationContext.configure(connection, opts={"version_table": schema.version_table})
    return tuple(sorted(context.get_current_heads()))
