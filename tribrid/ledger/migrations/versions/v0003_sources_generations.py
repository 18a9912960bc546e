"""Named sources and index generations.

A source can carry a name (``tribrid ingest PATH --source NAME``): its key stays what it
was, so its point ids do not change, and its location follows the folder. Each document
records the generation of the index its points are in (0 for every existing one: the
index as it is). Nothing is re-embedded.

Every change here is an ``ALTER TABLE ... ADD/DROP COLUMN`` or an index: no table is
copied. On SQLite a copied table is dropped, and dropping ``sources`` or ``documents``
with foreign keys on would cascade into every document and chunk.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("name", sa.Text(), nullable=True))
    op.create_index(op.f("ix_sources_name"), "sources", ["name"], unique=True)
    op.add_column(
        "documents",
        sa.Column("generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sources_name"), table_name="sources")
    # Native DROP COLUMN (SQLite >= 3.35, PostgreSQL): no table copy, no cascade.
    op.execute("ALTER TABLE documents DROP COLUMN generation")
    op.execute("ALTER TABLE sources DROP COLUMN name")
