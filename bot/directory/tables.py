"""The directory's tables, in SQLAlchemy Core. Migrations in ``bot/migrations`` create them;
keep the two in step.

A member's path (``Directory``'s Core statements) needs only these; the ORM classes over them
(``bot.directory.models``) and ``sqlalchemy.orm`` itself (5.6 MiB) are imported by the
moderators' and operators' methods when first called, not by a running bot's start.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "admissions",
    "audit_log",
    "community_policies",
    "grant_admissions",
    "invite_links",
    "metadata",
    "phone_links",
    "role_grants",
    "telegram_groups",
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


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True)


def _at(name: str, *, index: bool = False, updated: bool = False) -> Column[datetime]:
    """A required timestamp, now unless given (and on every update, if ``updated``)."""
    onupdate = utcnow if updated else None
    return Column(
        name, UTCDateTime(), nullable=False, default=utcnow, onupdate=onupdate, index=index
    )


#: One member on one platform and scope, and the phone number they verified, if any.
phone_links = Table(
    "phone_links",
    metadata,
    _id(),
    Column("platform", String(32), nullable=False),
    Column("scope", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("display_name", String(256)),
    # The platform username (Telegram's @name, without the @), for moderators to name them by.
    Column("handle", String(64)),
    Column("phone_e164", String(16), index=True),
    Column("country", String(2)),
    Column("is_phone_verified", Boolean(), nullable=False, default=False, server_default=false()),
    Column("verified_at", UTCDateTime()),
    _at("created_at"),
    _at("updated_at", updated=True),
    UniqueConstraint("platform", "scope", "user_id"),
    Index(None, "platform", "scope", "handle"),
)

#: A role given to a member; revoking keeps the row, so the history stays.
role_grants = Table(
    "role_grants",
    metadata,
    _id(),
    Column("link_id", ForeignKey("phone_links.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(128), nullable=False),
    Column("granted_by", String(256), nullable=False),
    _at("granted_at"),
    Column("revoked_at", UTCDateTime()),
    Column("revoked_by", String(256)),
    Index(None, "link_id", "role"),
)


def _admissions(name: str, owner: str, owner_table: str) -> Table:
    """Gated groups (``place``) a member was let into, each on the strength of one owner row."""
    return Table(
        name,
        metadata,
        _id(),
        Column(owner, ForeignKey(f"{owner_table}.id", ondelete="CASCADE"), nullable=False),
        Column("place", String(128), nullable=False),
        _at("admitted_at"),
        UniqueConstraint(owner, "place"),
    )


#: The gated groups this verified member was let into, so a rejoin is not asked.
admissions = _admissions("admissions", "link_id", "phone_links")

#: The gated groups a role grant opened to the member: they walk in while the grant stands.
#: Kept apart from ``admissions`` (the gate's own, which outlive any role) so that revoking the
#: grant withdraws exactly what it recorded, and another role's opening of the same group stays.
grant_admissions = _admissions("grant_admissions", "grant_id", "role_grants")

#: An invite link the platform made for a role grant, so revoking the grant revokes it.
invite_links = Table(
    "invite_links",
    metadata,
    _id(),
    Column(
        "grant_id", ForeignKey("role_grants.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("place", String(128), nullable=False),
    Column("url", String(256), nullable=False, unique=True),
    _at("created_at"),
    # After this the platform admits nobody by it, so it needs no revoking (and is pruned).
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
    # When the platform confirmed the revocation; None while it may still admit someone.
    Column("revoked_at", UTCDateTime()),
)

#: Something that happened to a member, who did it, and when. Never holds a full phone.
audit_log = Table(
    "audit_log",
    metadata,
    _id(),
    _at("at", index=True),
    Column("event", String(64), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("details", JSON(), nullable=False, default=dict),
    # audit_trail(subject=...) reads one member's entries newest first.
    Index(None, "subject", "at"),
)

#: What one community changed of its rules (``bot.policy``): only the fields it set, as the
#: settings file writes them, so the environment's defaults still give the rest.
community_policies = Table(
    "community_policies",
    metadata,
    # ``telegram:<chat id>`` or ``slack:<team id>`` (``bot.policy.community_scope``).
    Column("scope", String(160), primary_key=True),
    Column("overrides", JSON(), nullable=False, default=dict),
    # Counts changes, so a cache never puts an older policy back over a newer one.
    Column("revision", Integer, nullable=False, default=0),
    _at("updated_at"),
    Column("updated_by", String(256), nullable=False),
)

#: A Telegram group the bot is in, kept from ``my_chat_member`` as it is added or removed.
telegram_groups = Table(
    "telegram_groups",
    metadata,
    Column("chat_id", String(32), primary_key=True),
    Column("title", String(256)),
    _at("updated_at"),
)
