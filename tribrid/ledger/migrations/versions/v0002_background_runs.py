"""Background runs: documents remember their run and their unfinished parse attempts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("open_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.create_index(op.f("ix_documents_run_id_status"), ["run_id", "status"], unique=False)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("listed_at")
    with op.batch_alter_table("documents") as batch:
        batch.drop_index(op.f("ix_documents_run_id_status"))
        batch.drop_column("open_attempts")
        batch.drop_column("run_id")
