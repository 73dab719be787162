"""Storage for handlers: one database (SQLite or PostgreSQL) per process.

A building block or an application declares its tables as a
:class:`Schema` (SQLAlchemy Core metadata and Alembic migrations), lists it
in its handler class's ``schemas``, and reaches the database as
``self.component.storage``: a :class:`Database` whose :meth:`Database.transaction`
runs a function of a connection in a thread and fires once it committed.
"""

from empc.storage._database import Database, StorageUnavailable, parse_url
from empc.storage._runner import InlineRunner, Runner, ThreadPoolRunner
from empc.storage._schema import Schema, StorageError, schemas_of

__all__ = [
    "Database",
    "InlineRunner",
    "Runner",
    "Schema",
    "StorageError",
    "StorageUnavailable",
    "ThreadPoolRunner",
    "parse_url",
    "schemas_of",
]
