"""Events: tracked events, units seen, the hash cache, logged decisions and their outcomes.

Revision ID: 0002_events
Revises: 0001_catalog
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_events"
down_revision = "0001_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the event tables and their indexes."""
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("unit_id", sa.String(512), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("experiment_key", sa.String(128), nullable=False),
        sa.Column("experiment_version", sa.BigInteger, nullable=False),
        sa.Column("variant_key", sa.String(128), nullable=False),
        sa.Column("probability", sa.Double, nullable=False),
        sa.Column("decision_id", sa.String(256), nullable=False),
        sa.Column("allocation_version", sa.BigInteger, nullable=False),
        sa.Column("properties", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_events"),
    )
    op.create_index(
        "ix_events_exposures",
        "events",
        [
            "experiment_key",
            "unit_id",
            "time_us",
            "event_id",
            "variant_key",
            "allocation_version",
            "probability",
        ],
        sqlite_where=sa.text("name = '$exposure'"),
        postgresql_where=sa.text("name = '$exposure'"),
    )
    op.create_index("ix_events_name_unit", "events", ["name", "unit_id", "time_us", "value"])
    op.create_table(
        "event_units",
        sa.Column("unit_id", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("unit_id", name="pk_event_units"),
    )
    op.create_table(
        "unit_hashes",
        sa.Column("seed", sa.String(256), nullable=False),
        sa.Column("unit_id", sa.String(512), nullable=False),
        sa.Column("hash", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("seed", "unit_id", name="pk_unit_hashes"),
    )
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(256), nullable=False),
        sa.Column("unit_id", sa.String(512), nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("channel", sa.String(128), nullable=False),
        sa.Column("placement", sa.String(128), nullable=False),
        sa.Column("policy_version", sa.String(128), nullable=False),
        sa.Column("holdout", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("decision_id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_channel_time", "decisions", ["channel", "time_us"])
    op.create_table(
        "outcomes",
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("decision_id", sa.String(256), nullable=False),
        sa.Column("action_key", sa.String(128), nullable=False),
        sa.Column("reward", sa.Double, nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_outcomes"),
    )
    op.create_index("ix_outcomes_decision", "outcomes", ["decision_id"])


def downgrade() -> None:
    """Drop the event tables."""
    op.drop_index("ix_outcomes_decision", "outcomes")
    op.drop_table("outcomes")
    op.drop_index("ix_decisions_channel_time", "decisions")
    op.drop_table("decisions")
    op.drop_table("unit_hashes")
    op.drop_table("event_units")
    op.drop_index("ix_events_name_unit", "events")
    op.drop_index("ix_events_exposures", "events")
    op.drop_table("events")
