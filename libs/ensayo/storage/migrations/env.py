"""Alembic environment: runs on the connection ``ensayo.storage.engine.migrate`` passes in."""

from __future__ import annotations

from alembic import context

from ensayo.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover  (only ensayo.storage.engine.migrate drives Alembic)
    raise RuntimeError("run migrations through ensayo.storage.engine.migrate")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
