"""The directory's tables. Migrations in ``bot/migrations`` create them; keep the two in step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

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
    "UTCDateTime",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back tz-aware in UTC.

    SQLite has no time zones: SQLAlchemy writes the wall-clock digits and drops the offset, so
    a naive value would be read back as whatever zone it happened to be in. Naive datetimes
    are therefore refused, and everything is converted to UTC on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a tz-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    # Named constraints, so that later migrations can drop or alter them on every backend.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class PhoneLinkRow(Base):
    """One member on one platform and scope, and the phone number they verified, if any."""

    __tablename__ = "phone_links"
    __table_args__ = (
        UniqueConstraint("platform", "scope", "user_id"),
        Index(None, "platform", "scope", "handle"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(256))
    #: The platform username (Telegram's @name, without the @), for moderators to name them by.
    handle: Mapped[str | None] = mapped_column(String(64))
    phone_e164: Mapped[str | None] = mapped_column(String(16), index=True)
    country: Mapped[str | None] = mapped_column(String(2))
    is_phone_verified: Mapped[bool] = mapped_column(default=False, server_default=false())
    verified_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    grants: Mapped[list[RoleGrantRow]] = relationship(
        back_populates="link", cascade="all, delete-orphan", passive_deletes=True
    )


class RoleGrantRow(Base):
    """A role given to a member; revoking keeps the row, so the history stays."""

    __tablename__ = "role_grants"
    __table_args__ = (Index(None, "link_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("phone_links.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(128))
    granted_by: Mapped[str] = mapped_column(String(256))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(256))

    link: Mapped[PhoneLinkRow] = relationship(back_populates="grants")


class AdmissionRow(Base):
    """A gated group (``place``) this verified member was let into, so a rejoin is not asked."""

    __tablename__ = "admissions"
    __table_args__ = (UniqueConstraint("link_id", "place"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("phone_links.id", ondelete="CASCADE"))
    place: Mapped[str] = mapped_column(String(128))
    admitted_at: Mapped[datetime] = mapped_column(default=utcnow)


class GrantAdmissionRow(Base):
    """A gated group a role grant opened to the member: they walk in while the grant stands.

    Kept apart from ``AdmissionRow`` (the gate's own, which outlive any role) so that revoking
    the grant withdraws exactly what it recorded, and another role's opening of the same group
    stays.
    """

    __tablename__ = "grant_admissions"
    __table_args__ = (UniqueConstraint("grant_id", "place"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("role_grants.id", ondelete="CASCADE"))
    place: Mapped[str] = mapped_column(String(128))
    admitted_at: Mapped[datetime] = mapped_column(default=utcnow)


class InviteLinkRow(Base):
    """An invite link the platform made for a role grant, so revoking the grant revokes it."""

    __tablename__ = "invite_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(
        ForeignKey("role_grants.id", ondelete="CASCADE"), index=True
    )
    place: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(String(256), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: After this the platform admits nobody by it, so it needs no revoking (and is pruned).
    expires_at: Mapped[datetime] = mapped_column(index=True)
    #: When the platform confirmed the revocation; None while it may still admit someone.
    revoked_at: Mapped[datetime | None]


class AuditRow(Base):
    """Something that happened to a member, who did it, and when. Never holds a full phone."""

    __tablename__ = "audit_log"
    # audit_trail(subject=...) reads one member's entries newest first.
    __table_args__ = (Index(None, "subject", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(256))
    subject: Mapped[str] = mapped_column(String(256))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CommunityPolicyRow(Base):
    """What one community changed of its rules (``bot.policy``): only the fields it set, as the
    settings file writes them, so the environment's defaults still give the rest."""

    __tablename__ = "community_policies"

    #: ``telegram:<chat id>`` or ``slack:<team id>`` (``bot.policy.community_scope``).
    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Counts changes, so a cache never puts an older policy back over a newer one.
    revision: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(256))


class TelegramGroupRow(Base):
    """A Telegram group the bot is in, kept from ``my_chat_member`` as it is added or removed."""

    __tablename__ = "telegram_groups"

    chat_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
