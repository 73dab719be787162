"""The Alembic environment of empc schemas (run by path, not imported)."""
