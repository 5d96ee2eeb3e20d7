"""Each community's own policy (the fields it overrode) and the Telegram groups the bot is in.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
# 0005 (issue 15's review queue) is written alongside; the merge chains this after it.
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "community_policies",
        sa.Column("scope", sa.String(160), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_community_policies")),
    )
    op.create_table(
        "telegram_groups",
        sa.Column("chat_id", sa.String(32), nullable=False),
        sa.Column("title", sa.String(256), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_telegram_groups")),
    )


def downgrade() -> None:
    op.drop_table("telegram_groups")
    op.drop_table("community_policies")
