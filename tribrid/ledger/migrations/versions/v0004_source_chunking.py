"""The chunking a source's documents were cut with.

``sources.chunking`` holds the chunking settings of the source's last complete sync (a
JSON object). A later sync with other settings would mix chunks of two sizes in one
index, so it is refused with the fix (a rebuild, ``tribrid ingest --recreate``). Existing
sources start without a record and adopt the settings of their next sync: nothing is
re-embedded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("chunking", sa.Text(), nullable=True))


def downgrade() -> None:
    # Native DROP COLUMN (SQLite >= 3.35, PostgreSQL): no table copy, no cascade.
    op.execute("ALTER TABLE sources DROP COLUMN chunking")
