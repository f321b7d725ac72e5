"""Event ids up to 1,024 characters: an exposure id holds a 512-character unit id.

``$exposure:{experiment_key}:{version}:{unit_id}`` (CONTRACT.md) reaches about 670 characters
and ``$outcome:{event_id}`` 265; with 256 a cast truncated long ids, which then collided.

Revision ID: 0003_long_event_ids
Revises: 0002_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_long_event_ids"
down_revision = "0002_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Widen ``events.event_id`` and ``outcomes.event_id`` (metadata only on PostgreSQL)."""
    for table in ("events", "outcomes"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "event_id", existing_type=sa.String(256), type_=sa.String(1024), nullable=False
            )


def downgrade() -> None:
    """Narrow them again (fails if a longer id is stored)."""
    for table in ("events", "outcomes"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "event_id", existing_type=sa.String(1024), type_=sa.String(256), nullable=False
            )
