"""The SQL schema (SQLAlchemy Core), the single source for Alembic migrations and queries."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

__all__ = [
    "audit_records",
    "decisions",
    "definition_heads",
    "definition_versions",
    "event_units",
    "events",
    "metadata",
    "outcomes",
    "unit_hashes",
]

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

# --- events (analysis service; migration 0002_events) -------------------------------------------

# Every tracked event, written once per event_id by the stream consumer (INSERT ... ON CONFLICT
# DO NOTHING). Times are integer microseconds since the Unix epoch (UTC): exact, portable and
# cheap to compare in every SQL engine. properties is the event's properties as JSON text.
events = Table(
    "events",
    metadata,
    Column("event_id", String(1024), primary_key=True),  # an exposure id holds a unit id
    Column("unit_id", String(512), nullable=False),
    Column("name", String(128), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("value", Double, nullable=False),
    Column("experiment_key", String(128), nullable=False),
    Column("experiment_version", BigInteger, nullable=False),
    Column("variant_key", String(128), nullable=False),
    Column("probability", Double, nullable=False),
    Column("decision_id", String(256), nullable=False),
    Column("allocation_version", BigInteger, nullable=False),
    Column("properties", Text, nullable=False),
    # Exposures only (partial), in unit, time and id order and covering what the report's
    # first-exposure window function reads: it streams without a sort or a table lookup.
    Index(
        "ix_events_exposures",
        "experiment_key",
        "unit_id",
        "time_us",
        "event_id",
        "variant_key",
        "allocation_version",
        "probability",
        sqlite_where=text("name = '$exposure'"),
        postgresql_where=text("name = '$exposure'"),
    ),
    # A metric's events per unit, covering time and value (joined to first exposures).
    Index("ix_events_name_unit", "name", "unit_id", "time_us", "value"),
)

# Every unit seen in any event: the population of holdout reports.
event_units = Table(
    "event_units",
    metadata,
    Column("unit_id", String(512), primary_key=True),
)

# GrowthBook hash v2 of (seed, unit id) in [0, 1), cached: SQL cannot compute FNV-1a portably,
# so holdout membership (hash < fraction) is a join on this table.
unit_hashes = Table(
    "unit_hashes",
    metadata,
    Column("seed", String(256), primary_key=True),
    Column("unit_id", String(512), primary_key=True),
    Column("hash", Double, nullable=False),
)

# Logged decisions ($decision events), indexed by channel and time for off-policy evaluation;
# the full decision (candidates, chosen actions and propensities, context) is the event's
# properties in ``events``. holdout is 1 for a unit of a holdout covering decisioning.
decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(256), primary_key=True),
    Column("unit_id", String(512), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("channel", String(128), nullable=False),
    Column("placement", String(128), nullable=False),
    Column("policy_version", String(128), nullable=False),
    Column("holdout", Integer, nullable=False),
    Index("ix_decisions_channel_time", "channel", "time_us"),
)

# Rewards ($outcome events) joined to decisions by decision_id (and action_key when set).
outcomes = Table(
    "outcomes",
    metadata,
    Column("event_id", String(1024), primary_key=True),
    Column("decision_id", String(256), nullable=False),
    Column("action_key", String(128), nullable=False),
    Column("reward", Double, nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Index("ix_outcomes_decision", "decision_id"),
)
