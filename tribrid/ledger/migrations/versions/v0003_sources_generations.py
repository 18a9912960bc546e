"""Named sources and index generations.

A source can carry a name (``tribrid ingest PATH --source NAME``): its key stays what it
was, so its point ids do not change, and its location follows the folder. Each document
records the generation of the index its points are in (0 for every existing one: the
index as it is). Nothing is re-embedded.

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
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("name", sa.Text(), nullable=True))
        batch.create_unique_constraint(op.f("uq_sources_name"), ["name"])
    with op.batch_alter_table("documents") as batch:
        batch.add_column(
            sa.Column("generation", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("sources") as batch:
        batch.drop_constraint(op.f("uq_sources_name"), type_="unique")
        batch.drop_column("name")
