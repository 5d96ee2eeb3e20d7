"""Handles: a member's platform username (Telegram's @name), so moderators can name them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("phone_links") as batch:
        batch.add_column(sa.Column("handle", sa.String(64), nullable=True))
        batch.create_index(
            op.f("ix_phone_links_platform_scope_handle"), ["platform", "scope", "handle"]
        )


def downgrade() -> None:
    with op.batch_alter_table("phone_links") as batch:
        batch.drop_index(op.f("ix_phone_links_platform_scope_handle"))
        batch.drop_column("handle")
