"""Catalog: definition versions, heads and the audit log.

Revision ID: 0001_catalog
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_catalog"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the catalog tables."""
    op.create_table(
        "definition_versions",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", "version", name="pk_definition_versions"),
    )
    op.create_table(
        "definition_heads",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_definition_heads"),
    )
    op.create_table(
        "audit_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("diff", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_records_kind", "audit_records", ["kind"])


def downgrade() -> None:
    """Drop the catalog tables."""
    op.drop_index("ix_audit_records_kind", "audit_records")
    op.drop_table("audit_records")
    op.drop_table("definition_heads")
    op.drop_table("definition_versions")
