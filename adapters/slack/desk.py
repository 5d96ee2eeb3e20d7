"""The moderators' desk on Slack: ``/verifybot <subcommand>`` and the "Grant a role" shortcut.

This module reads who is asking (a workspace admin or owner is a moderator, SLACK_ADMIN_IDS
are admins) and about whom (a mention), and shows the ``Result``; the core's ``Moderation``
decides, refuses and audits. Answers are ephemeral, through the command's ``response_url``: it
works in any channel or DM, where chat.postEphemeral would need the bot in the channel, and it
is the only way to replace an ephemeral message (paging, confirming an unlink).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiohttp import ClientError
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import PLATFORM, call, team_id_of
from adapters.slack.profiles import Profiles
from adapters.slack.views import ROLE_INPUT, Views, element_state, escape
from bot.desk_commands import COMMANDS, Request, answer
from bot.identity import MemberKey
from bot.moderation import Actor, Document, Moderation, Rank, Result, page_number
from bot.texts import Catalogue

__all__ = ["Command", "SlackDesk", "parse", "user_ref"]

log = structlog.get_logger("verifybot.slack.desk")

#: How many words each subcommand needs after its name; the optional ones are 0.
SUBCOMMANDS: Final = {"help": 0} | {name: c.words_needed for name, c in COMMANDS.items()}
#: Subcommands whose first word names a member.
ABOUT_A_MEMBER: Final = frozenset(name for name, c in COMMANDS.items() if c.about_a_member)

# An escaped mention (the manifest's should_escape: true): <@U123|name>, or <@U123>.
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")

Ack = Callable[..., Awaitable[None]]
Respond = Callable[..., Awaitable[Any]]
Message = tuple[str, list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str, ...] = ()


def parse(text: str) -> Command:
    words = text.split()
    if not words:
        return Command("help")
    return Command(words[0].lower(), tuple(words[1:]))


def user_ref(word: str) -> str | None:
    """A member as the core's ``resolve`` takes them: a user id, or an ``@handle``."""
    mention = _MENTION.match(word)
    if mention:
        return mention.group(1)
    if _USER_ID.match(word):
        return word
    return word if word.startswith("@") and len(word) > 1 else None


class SlackDesk:
    """``/verifybot``, its buttons, and the grant shortcut, for one bolt app."""

    def __init__(
        self,
        moderation: Moderation,
        client: AsyncWebClient,
        profiles: Profiles,
        catalogue: Catalogue,
        *,
        moderator_max_age: float,
    ) -> None:
        self.moderation = moderation
        self.client = client
        self.profiles = profiles
        self.catalogue = catalogue
        #: MODERATOR_CACHE_SECONDS: how long Slack's word that someone is an admin holds.
        self.moderator_max_age = moderator_max_age

    async def actor(self, team_id: str, user_id: str) -> tuple[Actor, Views]:
        member, moderator = await self.profiles.moderator(
            team_id, user_id, max_age=self.moderator_max_age
        )
        rank = self.moderation.rank_of(member.key, platform_moderator=moderator)
        return Actor(member.key, rank, member.display_name), Views(self.catalogue, member.locale)

    # --- /verifybot ----------------------------------------------------------------------

    async def on_command(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        actor, views = await self.actor(body["team_id"], body["user_id"])
        text, blocks = await self.run(actor, views, parse(body.get("text") or ""))
        await _say(respond, (text, blocks))

    async def run(self, actor: Actor, views: Views, command: Command) -> Message:
        name, args = command.name, command.args
        needed = SUBCOMMANDS.get(name)
        if needed is None:
            return views.help(unknown=name)
        if name == "help":
            return views.help()
        if len(args) < needed:
            return views.usage(name)
        subject: MemberKey | None = None
        if name in ABOUT_A_MEMBER and args:
            ref = user_ref(args[0])
            subject = await self.moderation.resolve(PLATFORM, actor.key.scope, ref) if ref else None
            if subject is None:
                member = f"`{escape(args[0])}`"
                return views.admin_message("admin.unknown_member", member=member)
        result = await self._result(actor, name, subject, args)
        if result.document is not None and result.ok:
            return await self._send_export(actor, views, result.document, result)
        return views.result(result)

    async def _result(
        self, actor: Actor, name: str, subject: MemberKey | None, args: tuple[str, ...]
    ) -> Result:
        command = COMMANDS[name]
        request = Request(
            actor,
            subject,
            role=args[1] if command.takes_role else "",
            page=page_number(args[0] if args else None),
            platform=PLATFORM,
            scope=actor.key.scope,
            words=args,
        )
        return await answer(self.moderation, name, request)

    async def _send_export(
        self, actor: Actor, views: Views, document: Document, result: Result
    ) -> Message:
        """The CSV goes to the admin's DM (files_upload_v2), never into the channel."""
        client = self.client
        caption = "\n".join(views.admin_text(reply) for reply in result.replies)
        try:
            opened = await client.conversations_open(users=actor.key.user_id)
            channel = opened["channel"]["id"]
            await client.files_upload_v2(
                channel=channel,
                content=document.content,
                filename=document.filename,
                title=document.filename,
                initial_comment=caption,
            )
        except SlackApiError as exc:
            problem = str(exc.response.get("error") or "unknown")
        except (TimeoutError, SlackClientError, ClientError, OSError) as exc:
            problem = type(exc).__name__
        else:
            return views.admin_message("admin.export_sent")
        log.warning("slack_export_upload_failed", actor=str(actor), problem=problem)
        return views.admin_message("admin.export_failed", problem=problem)

    # --- buttons under the answers -------------------------------------------------------

    async def on_page(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        actor, views = await self.actor(*_who(body))
        page = page_number(str(body["actions"][0].get("value") or ""))
        result = await self.moderation.verified(
            actor, platform=PLATFORM, scope=actor.key.scope, page=page
        )
        await _replace(respond, views.result(result))

    async def on_unlink_confirmed(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        actor, views = await self.actor(*_who(body))
        token = str(body["actions"][0].get("value") or "")
        await _replace(respond, views.result(await self.moderation.confirm_unlink(actor, token)))

    async def on_unlink_cancelled(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        _, views = await self.actor(*_who(body))
        token = str(body["actions"][0].get("value") or "")
        await _replace(respond, views.result(await self.moderation.cancel_unlink(token)))

    # --- the "Grant a role" message shortcut ---------------------------------------------

    async def on_grant_shortcut(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        team_id, user_id = _who(body)
        actor, views = await self.actor(team_id, user_id)
        message = body.get("message") or {}
        author = message.get("user")
        if actor.rank < Rank.MODERATOR:
            subject = MemberKey(PLATFORM, team_id, str(author or "-"))
            refused = await self.moderation.check(actor, Rank.MODERATOR, "grant", subject)
            if refused is not None:  # always, at this rank; the attempt is audited
                await _say(respond, views.result(refused))
                return
        if not isinstance(author, str) or message.get("bot_id"):
            await _say(respond, views.admin_message("admin.no_author"))
            return
        roles = self.moderation.roles.roles
        if not roles:
            await _say(respond, views.result(self.moderation.role_list()))
            return
        choices = [(role.name, role.description) for _, role in sorted(roles.items())]
        meta = json.dumps({"subject": author}, separators=(",", ":"))
        view = views.grant_modal(f"<@{author}>", choices, meta)
        await call("views.open", self.client.views_open(trigger_id=body["trigger_id"], view=view))

    async def on_grant_submitted(self, ack: Ack, body: dict[str, Any]) -> None:
        view = body["view"]
        meta = view.get("private_metadata", "")
        actor, views = await self.actor(*_who(body))
        # Slack waits 3 s for the ack; the channels and the user group may take longer.
        await ack(response_action="update", view=views.grant_outcome(views.working(), meta))
        subject = _subject(meta)
        role = _selected(view, ROLE_INPUT)
        if subject is None:
            log.warning("slack_grant_view_without_subject", actor=str(actor))
            return
        result = await self.moderation.grant(
            actor, MemberKey(PLATFORM, actor.key.scope, subject), role
        )
        _, blocks = views.result(result)
        update = self.client.views_update(
            view_id=view["id"], view=views.grant_outcome(blocks, meta)
        )
        await call("views.update", update)


def _who(body: dict[str, Any]) -> tuple[str, str]:
    """(team id, user id) of whoever pressed or submitted something."""
    return team_id_of(body), body["user"]["id"]


async def _say(respond: Respond, message: Message) -> None:
    text, blocks = message
    await respond(text=text, blocks=blocks, response_type="ephemeral")


async def _replace(respond: Respond, message: Message) -> None:
    text, blocks = message
    await respond(text=text, blocks=blocks, replace_original=True, response_type="ephemeral")


def _subject(meta: str) -> str | None:
    try:
        data = json.loads(meta or "")
    except ValueError:
        return None
    subject = data.get("subject") if isinstance(data, dict) else None
    return subject if isinstance(subject, str) and _USER_ID.match(subject) else None


def _selected(view: dict[str, Any], block: str) -> str:
    option = element_state(view, block).get("selected_option")
    value = option.get("value") if isinstance(option, dict) else None
    return value if isinstance(value, str) else ""
