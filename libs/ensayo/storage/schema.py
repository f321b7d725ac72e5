"""The SQL schema (SQLAlchemy Core), the single source for Alembic migrations and queries."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["audit_records", "definition_heads", "definition_versions", "metadata"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Every version of every definition, immutable once written; body is the codec's JSON.
definition_versions = Table(
    "definition_versions",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
)

# The latest version per key; a conditional UPDATE on it is the optimistic lock.
definition_heads = Table(
    "definition_heads",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# One row per committed write; its id doubles as the catalog (snapshot) version.
audit_records = Table(
    "audit_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("kind", String(32), nullable=False, index=True),
    Column("key", String(128), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("operation", String(32), nullable=False),
    Column("diff", Text, nullable=False),
)
