"""What a role grant opened: the gated groups it admitted the member to, and the invite links
made for it, so that revoking the grant can take both back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grant_admissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("place", sa.String(128), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["role_grants.id"],
            name=op.f("fk_grant_admissions_grant_id_role_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grant_admissions")),
        sa.UniqueConstraint("grant_id", "place", name=op.f("uq_grant_admissions_grant_id_place")),
    )
    op.create_table(
        "invite_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("place", sa.String(128), nullable=False),
        sa.Column("url", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["role_grants.id"],
            name=op.f("fk_invite_links_grant_id_role_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invite_links")),
        sa.UniqueConstraint("url", name=op.f("uq_invite_links_url")),
    )
    op.create_index(op.f("ix_invite_links_grant_id"), "invite_links", ["grant_id"])
    op.create_index(op.f("ix_invite_links_expires_at"), "invite_links", ["expires_at"])


def downgrade() -> None:
    op.drop_table("invite_links")
    op.drop_table("grant_admissions")
