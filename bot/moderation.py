"""What moderators and admins do: grant and revoke roles, look members up, export, unlink,
and see or lift the SMS-fraud breaker's pauses.

Platform-neutral, like the engine: an adapter says who is asking (an ``Actor`` with the
``Rank`` the platform gives them) and about whom (a ``MemberKey``), and shows the ``Result``'s
replies. The directory is the source of truth; each platform's ``RolePlatform`` mirrors a
grant there, and a step it could not take is reported, audited and left for
``verifybot roles sync``. The CLI is one more caller, with the rank of an admin.
"""

from __future__ import annotations

import enum
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import structlog

from bot.directory import AsyncDirectory, Directory, GrantOutcome, PhoneLink
from bot.flow import Param, Reply
from bot.fraud import Pause, parse_scope
from bot.identity import Member, MemberKey
from bot.policy import Policies, scope_for
from bot.privacy import mask_phone
from bot.report import Format, export_rows, render
from bot.roles import Invite, PlatformStep, Role, RoleBook, RolePlatform
from bot.store import Store

__all__ = [
    "AUTO",
    "KNOWN_PROBLEMS",
    "Actor",
    "Document",
    "EveryLog",
    "ModLog",
    "Moderation",
    "Paging",
    "Rank",
    "Result",
    "SyncReport",
    "member_label",
]

log = structlog.get_logger("verifybot.moderation")

#: Who grants the roles given on verification.
AUTO: Final = "auto"
PAGE_SIZE: Final = 10
UNLINK_TTL: Final = 300
#: Problem words a ``PlatformStep`` may carry that the catalogue explains (``mod.problem.*``).
KNOWN_PROBLEMS: Final = frozenset(
    {
        "not_enough_rights",
        "not_in_channel",
        "is_archived",
        "channel_not_found",
        "chat_not_found",
        "plan_upgrade_required",
        "cannot_message",
        "rate_limited",
        "not_connected",
        "last_in_usergroup",
    }
)


class Rank(enum.IntEnum):
    MEMBER = 0
    MODERATOR = 1
    ADMIN = 2


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking, with the rank their platform (or the admin lists) gives them."""

    key: MemberKey
    rank: Rank
    name: str | None = None

    def __str__(self) -> str:
        return str(self.key)


@dataclass(frozen=True, slots=True)
class Document:
    filename: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    pages: int


def page_number(word: str | None) -> int:
    """The page a moderator asked for (a command's word, a button's value): the first
    unless it is a plain number. ``verified`` keeps it within the pages there are."""
    return int(word) if word and word.isascii() and word.isdigit() else 1


@dataclass(frozen=True, slots=True)
class Result:
    """What to show the moderator; ``ok`` is False for a refusal or a failure."""

    replies: tuple[Reply, ...]
    ok: bool = True
    document: Document | None = None
    #: ``/verified``: offer the previous and next pages.
    paging: Paging | None = None
    #: ``/unlink``: the token a Confirm button carries back to ``confirm_unlink``.
    confirm: str | None = None


@dataclass(frozen=True, slots=True)
class SyncReport:
    grants: int = 0
    failed: tuple[tuple[str, str, PlatformStep], ...] = ()  # (member, role, step)
    skipped: tuple[str, ...] = ()  # platforms with no connection


class ModLog(Protocol):
    """The moderators' log chat or channel; never raises. ``chat``: a community's own log
    chat (its policy's ``log_chat``) instead of the process-wide one."""

    async def post(self, line: Reply, *, chat: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class EveryLog:
    """Several log channels as one: the CLI posts to each platform's it is connected to."""

    logs: Sequence[ModLog]

    async def post(self, line: Reply, *, chat: str | None = None) -> None:
        for each in self.logs:
            await each.post(line, chat=chat)


class Named(Protocol):
    """A member's names as a platform gave them: a phone link's, or a member's own."""

    @property
    def display_name(self) -> str | None: ...
    @property
    def handle(self) -> str | None: ...


def member_label(link: Named | None, key: MemberKey) -> str:
    """How a member is named in replies and log lines: name, @handle and id, never a phone."""
    if link is None:
        return key.user_id
    parts = [link.display_name or ""]
    if link.handle:
        parts.append(f"@{link.handle}")
    parts.append(f"({key.user_id})")
    return " ".join(p for p in parts if p)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


@dataclass
class Moderation:
    """Every moderator and admin action, checked, audited, mirrored and logged."""

    directory: Directory
    roles: RoleBook
    #: The platforms this process can act on, by name ("telegram", "slack").
    platforms: Mapping[str, RolePlatform] = field(default_factory=dict)
    log: ModLog | None = None
    #: Where unlink confirmations wait (without it, unlink needs ``confirmed=True``) and
    #: where the fraud breaker's pauses live (without it, ``fraud`` says none is paused).
    store: Store | None = None
    #: Ids named as admins in the settings, per platform.
    admins: Mapping[str, frozenset[str]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    #: Each community's rules: where its verifications are logged and which roles they give.
    policies: Policies | None = None
    #: No bound of its own, unlike a member's path: a desk command (stats over a whole
    #: community, a sync over every grant) may rightly take longer than one member's look-up,
    #: and no member waits on it. Each statement, connect and lock wait is still bounded by
    #: the database engine's own timeouts (DATABASE_TIMEOUT_SECONDS).
    _directory: AsyncDirectory = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._directory = AsyncDirectory(self.directory, timeout=None)

    # -- who may ---------------------------------------------------------------------------------

    def rank_of(self, key: MemberKey, *, platform_moderator: bool) -> Rank:
        """An id in the admin list is an admin; the platform's own moderators are moderators."""
        if key.user_id in self.admins.get(key.platform, frozenset()):
            return Rank.ADMIN
        return Rank.MODERATOR if platform_moderator else Rank.MEMBER

    async def resolve(self, platform: str, scope: str, ref: str) -> MemberKey | None:
        """A member named by id or ``@handle``; None for a handle nobody verified under."""
        ref = ref.strip()
        if ref.startswith("@"):
            link = await self._directory.find_by_handle(platform, scope, ref)
            return link.key if link else None
        return MemberKey(platform, scope, ref) if ref else None

    # -- moderators ------------------------------------------------------------------------------

    async def grant(self, actor: Actor, subject: MemberKey, role_name: str) -> Result:
        refused = await self.check(actor, Rank.MODERATOR, "grant", subject)
        if refused:
            return refused
        role = self.roles.get(role_name)
        if role is None:
            return self._unknown_role(role_name)
        outcome = await self._directory.grant_role(
            subject, role.name, granted_by=str(actor), now=self._now()
        )
        _, who = await self._named(subject)
        if outcome is GrantOutcome.NOT_VERIFIED:
            return Result((Reply("mod.not_verified", {"member": who}),), ok=False)
        if outcome is GrantOutcome.ALREADY_HELD:
            return Result((Reply("mod.already_has", {"member": who, "role": role.name}),))
        replies = [Reply("mod.granted", {"member": who, "role": role.name})]
        replies += await self._mirror(actor, subject, who, role)
        await self._post(
            Reply(
                "modlog.granted", {"member": who, "role": role.name, "by": actor.name or str(actor)}
            )
        )
        return Result(tuple(replies))

    async def revoke(self, actor: Actor, subject: MemberKey, role_name: str) -> Result:
        refused = await self.check(actor, Rank.MODERATOR, "revoke", subject)
        if refused:
            return refused
        role = self.roles.get(role_name)
        name = role.name if role else role_name.strip().lower()
        revoked = await self._directory.revoke_role(
            subject, name, revoked_by=str(actor), now=self._now()
        )
        _, who = await self._named(subject)
        if not revoked:
            if role is None:
                return self._unknown_role(role_name)
            return Result((Reply("mod.not_held", {"member": who, "role": name}),), ok=False)
        replies = [Reply("mod.revoked", {"member": who, "role": name})]
        replies += await self._mirror(actor, subject, who, role or name, undo=True)
        await self._post(
            Reply("modlog.revoked", {"member": who, "role": name, "by": actor.name or str(actor)})
        )
        return Result(tuple(replies))

    async def roles_of(self, actor: Actor, subject: MemberKey) -> Result:
        refused = await self.check(actor, Rank.MODERATOR, "roles", subject)
        if refused:
            return refused
        link, who = await self._named(subject)
        if link is None or not link.roles:
            return Result((Reply("mod.no_roles", {"member": who}),))
        return Result((Reply("mod.roles_of", {"member": who, "roles": ", ".join(link.roles)}),))

    def role_list(self) -> Result:
        """The roles a moderator may grant (anyone may see the names)."""
        if not self.roles.roles:
            return Result((Reply("mod.no_roles_defined"),))
        lines = "\n".join(
            f"• {r.name}" + (f": {r.description}" if r.description else "")
            for r in sorted(self.roles.roles.values(), key=lambda r: r.name)
        )
        return Result((Reply("mod.role_list", {"roles": lines}),))

    # -- admins ----------------------------------------------------------------------------------

    async def whois(self, actor: Actor, subject: MemberKey) -> Result:
        refused = await self.check(actor, Rank.ADMIN, "whois", subject)
        if refused:
            return refused
        await self._audit("looked_up", actor, str(subject), {})
        link, who = await self._named(subject)
        if link is None:
            return Result((Reply("mod.whois.unknown", {"member": who}),))
        roles = ", ".join(link.roles) or "-"
        if not link.is_phone_verified or link.phone_e164 is None:
            return Result((Reply("mod.whois.unverified", {"member": who, "roles": roles}),))
        params = {
            "member": who,
            "phone": mask_phone(link.phone_e164),
            "verified_at": _when(link.verified_at),
            "roles": roles,
        }
        return Result((Reply("mod.whois.verified", params),))

    async def verified(
        self, actor: Actor, *, platform: str, scope: str | None, page: int = 1
    ) -> Result:
        refused = await self.check(actor, Rank.ADMIN, "verified", None)
        if refused:
            return refused
        await self._audit("listed", actor, f"{platform}:{scope or '*'}", {"page": page})
        total = await self._directory.count_members(
            platform=platform, scope=scope, verified_only=True
        )
        if not total:
            return Result((Reply("mod.verified.empty"),))
        pages = -(-total // PAGE_SIZE)
        page = min(max(page, 1), pages)
        links = await self._directory.list_links(
            platform=platform,
            scope=scope,
            verified_only=True,
            offset=(page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
        lines = "\n".join(
            f"• {member_label(link, link.key)} · {mask_phone(link.phone_e164 or '')}"
            f" · {_when(link.verified_at)}" + (f" · {', '.join(link.roles)}" if link.roles else "")
            for link in links
        )
        params: dict[str, Param] = {"page": page, "pages": pages, "total": total, "lines": lines}
        return Result((Reply("mod.verified.page", params),), paging=Paging(page, pages))

    async def stats(self, actor: Actor, *, platform: str, scope: str | None) -> Result:
        refused = await self.check(actor, Rank.ADMIN, "stats", None)
        if refused:
            return refused
        numbers = await self._directory.stats(platform=platform, scope=scope, now=self._now())
        rate = numbers.conversion
        params: dict[str, Param] = {
            "verified": numbers.verified,
            "pending": numbers.pending,
            "started": numbers.started_today,
            "sms": numbers.sms_today,
            "conversion": "-" if rate is None else f"{rate:.0%}",
        }
        return Result((Reply("mod.stats", params),))

    async def export(
        self,
        actor: Actor,
        *,
        platform: str | None,
        scope: str | None,
        reveal_phones: bool = False,
        fmt: Format = "csv",
    ) -> Result:
        """Every member as a file; full numbers only when asked, and that is audited."""
        refused = await self.check(actor, Rank.ADMIN, "export", None)
        if refused:
            return refused
        links = await self._directory.list_links(platform=platform, scope=scope)
        content = render(export_rows(links, reveal_phones=reveal_phones), fmt) + "\n"
        await self._audit(
            "phones_revealed" if reveal_phones else "exported",
            actor,
            f"{platform or '*'}:{scope or '*'}",
            {"members": len(links)},
        )
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d-%H%M")
        name = f"verifybot-{platform or 'all'}-{stamp}.{'txt' if fmt == 'table' else fmt}"
        document = Document(name, content.encode())
        return Result((Reply("mod.export.caption", {"count": len(links)}),), document=document)

    async def unlink(self, actor: Actor, subject: MemberKey, *, confirmed: bool = False) -> Result:
        """Ask for a confirmation first (a token with a short life), unless ``confirmed``."""
        refused = await self.check(actor, Rank.ADMIN, "unlink", subject)
        if refused:
            return refused
        link = await self._directory.find_verified(subject)
        who = member_label(link, subject)
        if link is None:
            return Result((Reply("mod.unlink.not_verified", {"member": who}),), ok=False)
        if confirmed:
            return await self._unlink(actor, subject, who)
        if self.store is None:
            raise RuntimeError("unlink confirmations need a store")
        token = secrets.token_urlsafe(12)
        pending = json.dumps({"actor": str(actor), "subject": str(subject)})
        await self.store.stash(f"unlink:{token}", pending, ttl=UNLINK_TTL)
        return Result((Reply("mod.unlink.confirm", {"member": who}),), confirm=token)

    async def confirm_unlink(self, actor: Actor, token: str) -> Result:
        refused = await self.check(actor, Rank.ADMIN, "unlink", None)
        if refused:
            return refused
        raw = await self.store.take(f"unlink:{token}") if self.store else None
        pending = json.loads(raw) if raw else None
        if pending is None or pending["actor"] != str(actor):
            return Result((Reply("mod.unlink.expired"),), ok=False)
        platform, scope, user_id = pending["subject"].split(":", 2)
        subject = MemberKey(platform, scope, user_id)
        link = await self._directory.find(subject)
        return await self._unlink(actor, subject, member_label(link, subject))

    async def cancel_unlink(self, token: str) -> Result:
        if self.store is not None:
            await self.store.take(f"unlink:{token}")
        return Result((Reply("mod.unlink.cancelled"),))

    async def fraud(self, actor: Actor, words: Sequence[str] = ()) -> Result:
        """``fraud`` (or ``fraud status``): every paused country and prefix; ``fraud lift
        ES`` or ``fraud lift +3461234``: resume sending there now. Both audited."""
        refused = await self.check(actor, Rank.ADMIN, "fraud", None)
        if refused:
            return refused
        verb = words[0].lower() if words else "status"
        if verb == "status" and len(words) <= 1:
            await self._audit("fraud_status", actor, "-", {})
            return self._pauses(await self.store.pauses(now=self.clock()) if self.store else [])
        scope = parse_scope(" ".join(words[1:])) if verb == "lift" and len(words) > 1 else None
        if scope is None:
            return Result((Reply("mod.fraud.usage"),), ok=False)
        lifted = await self.store.lift(scope) if self.store else False
        await self._audit("fraud_lifted", actor, scope.field, {"was_paused": lifted})
        if not lifted:
            return Result((Reply("mod.fraud.not_paused", {"scope": str(scope)}),), ok=False)
        log.warning("fraud_pause_lifted", scope=scope.kind, actor=str(actor))
        await self._post(
            Reply("modlog.fraud_lifted", {"scope": scope.masked, "by": actor.name or str(actor)})
        )
        return Result((Reply("mod.fraud.lifted", {"scope": str(scope)}),))

    def _pauses(self, pauses: Sequence[Pause]) -> Result:
        if not pauses:
            return Result((Reply("mod.fraud.none"),))
        lines = "\n".join(
            f"• {p.scope} · {p.verified}/{p.sent} ({p.conversion:.0%})"
            f" · {_when(datetime.fromtimestamp(p.until, UTC))}"
            for p in pauses
        )
        return Result((Reply("mod.fraud.status", {"lines": lines}),))

    # -- the bot itself --------------------------------------------------------------------------

    async def breaker_tripped(self, member: Member, pause: Pause) -> None:
        """Tell the moderators' log the fraud breaker paused a country or a prefix (masked
        like a number); never raises. ``member`` is whoever's SMS found it."""
        try:
            params: dict[str, Param] = {
                "scope": pause.scope.masked,
                "sent": pause.sent,
                "verified": pause.verified,
                "until": _when(datetime.fromtimestamp(pause.until, UTC)),
            }
            await self._post(Reply("modlog.fraud_tripped", params))
        except Exception:
            log.exception("fraud_log_failed", member=str(member.key))

    async def member_verified(
        self, member: Member, *, fresh: bool = True, origin: str | None = None
    ) -> None:
        """Log a ``fresh`` verification and give ``AUTO_ROLES``; never raises. ``origin``:
        the place the member verified for, whose policy's ``log_chat`` hears of it.

        Not fresh: a member verified before came back by a deep link. Their auto roles are
        ensured (the roles file may have changed), but the log hears nothing new.
        """
        if not self.roles.auto and not (fresh and self.log is not None):
            return  # nothing to post, no role to give: no need to ask the directory who it is
        try:
            policy = None
            if self.policies is not None:
                policy = await self.policies.policy_for(scope_for(member.key, origin))
            # The names the platform gave with this message are the ones the verification
            # just wrote to the directory: asking it back would cost an ORM query per member.
            # Without a display name, the directory may still hold an older one.
            if member.display_name is None:
                _, who = await self._named(member.key)
            else:
                who = member_label(member, member.key)
            if fresh:
                line = Reply("modlog.verified", {"member": who})
                await self._post(line, chat=policy.log_chat if policy else None)
            # The group's own auto roles (set only by the operator, ``verifybot policy set``:
            # a role can open other communities' chats, so no group admin may choose them),
            # else AUTO_ROLES, which is every policy's default.
            for name in policy.auto_roles if policy is not None else self.roles.auto:
                role = self.roles.roles.get(name)
                if role is None:  # the roles file lost it since the operator chose it
                    log.warning("auto_role_undefined", role=name)
                    continue
                outcome = await self._directory.grant_role(
                    member.key, name, granted_by=AUTO, now=self._now()
                )
                if outcome is GrantOutcome.GRANTED:
                    await self._mirror(None, member.key, who, role)
        except Exception:
            log.exception("auto_roles_failed", member=str(member.key))

    async def sync(self, actor: Actor, *, platform: str | None = None) -> SyncReport:
        """Apply every active grant of verified members again, on every connected platform."""
        refused = await self.check(actor, Rank.ADMIN, "sync", None)
        if refused:
            raise PermissionError("roles sync is for admins")
        grants, failed, skipped = 0, [], set()
        # Links a platform refused to revoke before: revoked now, before anything is applied.
        pending = await self._directory.pending_revocations(platform=platform, now=self._now())
        for member, name, invite in pending:
            revoker = self.platforms.get(member.platform)
            if revoker is None:
                skipped.add(member.platform)
                continue
            step = await self._revoke_invite(revoker, member, invite)
            if not step.ok:
                failed.append((str(member), name, step))
        links = await self._directory.list_links(platform=platform, verified_only=True)
        for link in links:
            applier = self.platforms.get(link.platform)
            for name in link.roles:
                role = self.roles.get(name)
                if role is None:
                    continue
                if applier is None:
                    skipped.add(link.platform)
                    continue
                grants += 1
                steps = await applier.apply(link.key, role)
                steps += await self._record_invites(applier, link.key, name, steps)
                for step in steps:
                    if not step.ok:
                        failed.append((str(link.key), name, step))
        await self._audit(
            "roles_synced", actor, platform or "*", {"grants": grants, "failed": len(failed)}
        )
        return SyncReport(grants, tuple(failed), tuple(sorted(skipped)))

    # -- helpers ---------------------------------------------------------------------------------

    async def check(
        self, actor: Actor, needed: Rank, command: str, subject: MemberKey | None
    ) -> Result | None:
        """None if ``actor`` may; else the polite refusal, with the attempt audited."""
        if actor.rank >= needed:
            return None
        await self._audit("refused", actor, str(subject) if subject else "-", {"command": command})
        log.info("command_refused", actor=str(actor), command=command)
        key = "mod.refused.admin" if needed is Rank.ADMIN else "mod.refused.moderator"
        return Result((Reply(key),), ok=False)

    async def _named(self, subject: MemberKey) -> tuple[PhoneLink | None, str]:
        link = await self._directory.find(subject)
        return link, member_label(link, subject)

    def _unknown_role(self, name: str) -> Result:
        if not self.roles.roles:
            return Result((Reply("mod.no_roles_defined"),), ok=False)
        params = {"role": name, "roles": ", ".join(self.roles.names)}
        return Result((Reply("mod.unknown_role", params),), ok=False)

    async def _mirror(
        self,
        actor: Actor | None,
        subject: MemberKey,
        who: str,
        role: Role | str,
        *,
        undo: bool = False,
    ) -> list[Reply]:
        """Carry a grant or revoke out on the member's platform; report what did not happen.

        ``role`` is only a name when it was revoked after leaving the roles file: its links
        are still revoked, but there is nothing else to undo.
        """
        name = role if isinstance(role, str) else role.name
        applier = self.platforms.get(subject.platform)
        if applier is None:
            return [Reply("mod.not_connected", {"platform": subject.platform})]
        if undo:
            # Links first: once the member is removed, a live link would let them back in.
            steps = await self._revoke_invites(applier, subject, name)
            if isinstance(role, Role):
                # Read after the revoke: what the member's other roles open must stay open.
                link = await self._directory.find(subject)
                kept = tuple(r for r in map(self.roles.get, link.roles if link else ()) if r)
                steps += await applier.undo(subject, role, kept)
        elif isinstance(role, Role):
            steps = await applier.apply(subject, role)
            steps += await self._record_invites(applier, subject, name, steps)
        failed = [step for step in steps if not step.ok]
        if not failed:
            return []
        by = str(actor) if actor else AUTO
        await self._audit(
            "role_undo_failed" if undo else "role_apply_failed",
            by,
            str(subject),
            {"role": name, "steps": [[s.action, s.target, s.problem] for s in failed]},
        )
        await self._post(
            Reply("modlog.not_applied", {"member": who, "role": name, "count": len(failed)})
        )
        return [_problem(step) for step in failed] + [Reply("mod.sync_hint")]

    async def _record_invites(
        self, applier: RolePlatform, subject: MemberKey, role: str, steps: Sequence[PlatformStep]
    ) -> list[PlatformStep]:
        """Record the links ``steps`` made against the grant of ``role``. A link made while
        the grant was being revoked is revoked at once: the revoke did not see it."""
        late: list[PlatformStep] = []
        for invite in (step.invite for step in steps if step.invite is not None):
            recorded = await self._directory.record_invite(subject, role, invite, now=self._now())
            if not recorded:
                late.append(await applier.revoke_invite(subject, invite))
        return late

    async def _revoke_invites(
        self, applier: RolePlatform, subject: MemberKey, role: str
    ) -> list[PlatformStep]:
        """Revoke every link made for ``subject``'s revoked grants of ``role``, used or not;
        one the platform refused stays recorded as unrevoked."""
        invites = await self._directory.invites_to_revoke(subject, role, now=self._now())
        return [await self._revoke_invite(applier, subject, invite) for invite in invites]

    async def _revoke_invite(
        self, applier: RolePlatform, subject: MemberKey, invite: Invite
    ) -> PlatformStep:
        step = await applier.revoke_invite(subject, invite)
        if step.ok:
            await self._directory.invite_revoked(invite.url, now=self._now())
        return step

    async def _unlink(self, actor: Actor, subject: MemberKey, who: str) -> Result:
        if self.store is not None:
            # First: from now on every worker's next message asks the directory. If Redis
            # cannot say so, nothing is unlinked (the error reaches the admin).
            await self.store.forget_verification(subject)
        revoked = await self._directory.unverify(subject, actor=str(actor), now=self._now())
        if revoked is None:
            return Result((Reply("mod.unlink.not_verified", {"member": who}),), ok=False)
        replies = [Reply("mod.unlink.done", {"member": who})]
        for name in revoked:
            replies += await self._mirror(
                actor, subject, who, self.roles.get(name) or name, undo=True
            )
        await self._post(Reply("modlog.unlinked", {"member": who, "by": actor.name or str(actor)}))
        return Result(tuple(replies))

    async def _audit(
        self, event: str, actor: Actor | str, subject: str, details: dict[str, Any]
    ) -> None:
        await self._directory.audit(
            event,
            actor=str(actor),
            subject=subject,
            details=details,
            now=self._now(),
        )

    async def _post(self, line: Reply, *, chat: str | None = None) -> None:
        if self.log is not None:
            await self.log.post(line, chat=chat)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


def _problem(step: PlatformStep) -> Reply:
    word = step.problem if step.problem in KNOWN_PROBLEMS else "other"
    params: dict[str, str | int] = {"target": step.target, "action": step.action}
    if word == "other":
        params["problem"] = step.problem or "unknown"
    return Reply(f"mod.problem.{word}", params)


def problems_of(report: SyncReport) -> Sequence[Reply]:
    return [_problem(step) for _, _, step in report.failed]
