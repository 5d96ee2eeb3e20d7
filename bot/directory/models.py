"""The ORM classes over the directory's tables (``bot.directory.tables``), for the methods that
load and change rows as objects: the moderators' and operators' side, not a member's path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from bot.directory.tables import (
    admissions,
    audit_log,
    community_policies,
    grant_admissions,
    invite_links,
    phone_links,
    role_grants,
    telegram_groups,
)
from bot.directory.tables import metadata as schema

__all__ = [
    "AdmissionRow",
    "AuditRow",
    "Base",
    "CommunityPolicyRow",
    "GrantAdmissionRow",
    "InviteLinkRow",
    "PhoneLinkRow",
    "RoleGrantRow",
    "TelegramGroupRow",
]


class Base(DeclarativeBase):
    metadata = schema


class PhoneLinkRow(Base):
    __table__ = phone_links

    id: Mapped[int]
    platform: Mapped[str]
    scope: Mapped[str]
    user_id: Mapped[str]
    display_name: Mapped[str | None]
    handle: Mapped[str | None]
    phone_e164: Mapped[str | None]
    country: Mapped[str | None]
    is_phone_verified: Mapped[bool]
    verified_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    grants: Mapped[list[RoleGrantRow]] = relationship(
        back_populates="link", cascade="all, delete-orphan", passive_deletes=True
    )


class RoleGrantRow(Base):
    __table__ = role_grants

    id: Mapped[int]
    link_id: Mapped[int]
    role: Mapped[str]
    granted_by: Mapped[str]
    granted_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None]

    link: Mapped[PhoneLinkRow] = relationship(back_populates="grants")


class AdmissionRow(Base):
    __table__ = admissions

    id: Mapped[int]
    link_id: Mapped[int]
    place: Mapped[str]
    admitted_at: Mapped[datetime]


class GrantAdmissionRow(Base):
    __table__ = grant_admissions

    id: Mapped[int]
    grant_id: Mapped[int]
    place: Mapped[str]
    admitted_at: Mapped[datetime]


class InviteLinkRow(Base):
    __table__ = invite_links

    id: Mapped[int]
    grant_id: Mapped[int]
    place: Mapped[str]
    url: Mapped[str]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuditRow(Base):
    __table__ = audit_log

    id: Mapped[int]
    at: Mapped[datetime]
    event: Mapped[str]
    actor: Mapped[str]
    subject: Mapped[str]
    details: Mapped[dict[str, Any]]


class CommunityPolicyRow(Base):
    __table__ = community_policies

    scope: Mapped[str]
    overrides: Mapped[dict[str, Any]]
    revision: Mapped[int]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str]


class TelegramGroupRow(Base):
    __table__ = telegram_groups

    chat_id: Mapped[str]
    title: Mapped[str | None]
    updated_at: Mapped[datetime]
