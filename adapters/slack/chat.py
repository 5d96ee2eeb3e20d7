"""Slack, the member's side: the ``/verify`` modal, the bot's DM and the App Home tab.

Slack input becomes core events, core replies become Block Kit (``adapters.slack.views``).
The conversation lives in the core (Redis), never in bolt; what follows a verification (the
moderators' log, AUTO_ROLES) is the core's bus's.

Slack wants an answer within 3 seconds, so every listener acknowledges first and talks to
the engine afterwards (bolt runs the rest after the ack, ``process_before_response`` off).
Deliveries are deduplicated by the core with the Events API ``event_id``: bolt does not,
and in Socket Mode it sets ``X-Slack-Retry-Num: 0`` on first deliveries, so that header is
no sign of a retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import PLATFORM, call, team_id_of
from adapters.slack.profiles import Profiles
from adapters.slack.views import (
    ACTIONS_BY_ID,
    CODE_INPUT,
    PHONE_INPUT,
    Views,
    element_state,
    metadata,
    read_metadata,
)
from bot.engine import Engine, Outcome
from bot.flow import ACTION_EVENTS, CodeGiven, PhoneGiven, Reply, Start, State, Text
from bot.identity import Member, MemberKey
from bot.privacy import mask_phone
from bot.texts import Catalogue

#: How long a code submission may wait for the engine before the modal is acknowledged
#: with "checking…" instead of the answer (Slack gives up at 3 s).
ACK_BUDGET = 2.0


class SlackChat:
    """The member's listeners: the ``/verify`` modal, buttons, the DM and the App Home tab."""

    def __init__(
        self,
        engine: Engine,
        catalogue: Catalogue,
        client: AsyncWebClient,
        profiles: Profiles,
        *,
        invite_new_members: bool = False,
    ) -> None:
        self.engine = engine
        self.catalogue = catalogue
        self.client = client
        self.profiles = profiles
        self.invite_new_members = invite_new_members

    async def member(self, team_id: str, user_id: str) -> Member:
        return await self.profiles.member(team_id, user_id)

    def views(self, member: Member) -> Views:
        return Views(self.catalogue, member.locale)

    def modal_for(self, member: Member, outcome: Outcome) -> dict[str, Any]:
        """The modal that shows where the conversation is now."""
        views, meta = self.views(member), metadata(member.locale, member.display_name)
        if outcome.state is State.AWAIT_PHONE:
            return views.phone_modal(outcome.replies, meta)
        if outcome.state is State.AWAIT_CODE:
            return views.code_modal(outcome.replies, meta)
        return views.info_modal(outcome.replies, meta)

    # --- sending -------------------------------------------------------------------------

    async def direct_message(self, member: Member, text: str, blocks: list[Any]) -> None:
        opened = await call(
            "conversations.open", self.client.conversations_open(users=member.key.user_id)
        )
        channel = (opened or {}).get("channel") or {}
        if isinstance(channel, dict) and channel.get("id"):
            await self.post(channel["id"], text, blocks)

    async def post_replies(self, member: Member, channel: str | None, outcome: Outcome) -> None:
        if channel and outcome.replies:
            await self.post(channel, *self.views(member).message(outcome.replies))

    async def post(self, channel: str, text: str, blocks: list[Any]) -> None:
        await call(
            "chat.postMessage",
            self.client.chat_postMessage(channel=channel, text=text, blocks=blocks),
        )

    async def open_modal(self, member: Member, trigger_id: str) -> None:
        # The trigger_id lives ~3 s: Start costs a Redis and a database lookup, well within.
        async def render(outcome: Outcome) -> None:
            view = self.modal_for(member, outcome)
            await call("views.open", self.client.views_open(trigger_id=trigger_id, view=view))

        await self.engine.handle(member, Start(), render=render)

    async def update_modal(self, member: Member, view: dict[str, Any], outcome: Outcome) -> None:
        update = self.client.views_update(view_id=view["id"], view=self.modal_for(member, outcome))
        await call("views.update", update)

    async def announce_verified(self, member: Member, outcome: Outcome) -> None:
        """A verification in a modal is said in the DM too, where it stays."""
        if outcome.verified is not None:
            await self.direct_message(member, *self.views(member).message(outcome.replies))

    # --- listeners -----------------------------------------------------------------------

    async def on_command(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        await ack()
        member = await self.member(body["team_id"], body["user_id"])
        await self.open_modal(member, body["trigger_id"])

    async def on_phone_submitted(
        self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]
    ) -> None:
        member, view = self._modal_member(body), body["view"]
        text = _input(view, PHONE_INPUT)
        refusal = self.engine.screen_phone(text)
        views = self.views(member)
        if refusal is not None:
            await ack(response_action="errors", errors={PHONE_INPUT: views.short(refusal)})
            return
        meta = view.get("private_metadata", "")
        sending = views.info_modal([Reply("code.sending")], meta)
        await ack(response_action="update", view=sending)
        await self.engine.handle(
            member, PhoneGiven(text), render=partial(self.update_modal, member, view)
        )

    async def on_code_submitted(
        self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]
    ) -> None:
        member, view = self._modal_member(body), body["view"]
        views = self.views(member)
        # Whoever comes first answers Slack: the outcome, or "checking…" after ACK_BUDGET.
        answering = asyncio.Lock()
        acked = False

        async def render(outcome: Outcome) -> None:
            nonlocal acked
            async with answering:
                if acked:  # Vonage was slow: Slack has "checking…", the result follows
                    await self.update_modal(member, view, outcome)
                elif outcome.state is State.AWAIT_CODE and outcome.replies:
                    # A wrong or malformed code: shown under the input, with the tries left.
                    error = " ".join(views.short(reply) for reply in outcome.replies)
                    await ack(response_action="errors", errors={CODE_INPUT: error})
                else:
                    await ack(response_action="update", view=self.modal_for(member, outcome))
                acked = True
            await self.announce_verified(member, outcome)

        code = CodeGiven(_input(view, CODE_INPUT))
        task = asyncio.ensure_future(self.engine.handle(member, code, render=render))
        done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET)
        if not done:
            async with answering:
                if not acked:
                    checking = views.checking_modal(view.get("private_metadata", ""))
                    await ack(response_action="update", view=checking)
                    acked = True
            await task

    async def on_action(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        await ack()
        action = ACTIONS_BY_ID[body["actions"][0]["action_id"]]
        member = await self.member(team_id_of(body), body["user"]["id"])
        view = body.get("view") or {}
        if view.get("type") == "modal":

            async def in_modal(outcome: Outcome) -> None:
                modal = self.modal_for(member, outcome)
                update = self.client.views_update(
                    view_id=view["id"], hash=view.get("hash"), view=modal
                )
                await call("views.update", update)

            await self.engine.handle(member, ACTION_EVENTS[action], render=in_modal)
        elif view.get("type") == "home":
            # The Home tab's Verify: the button's trigger_id opens the modal.
            await self.open_modal(member, body["trigger_id"])
        else:
            # A button under a DM message: the conversation goes on in the DM.
            channel = (body.get("channel") or {}).get("id")
            render = partial(self.post_replies, member, channel)
            await self.engine.handle(member, ACTION_EVENTS[action], render=render)

    async def on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Edits, joins and bots (ourselves included) are not the member typing.
        if event.get("subtype") or event.get("bot_id") or event.get("channel_type") != "im":
            return
        user_id, text, channel = event.get("user"), event.get("text"), event.get("channel")
        if not isinstance(user_id, str) or not isinstance(channel, str):
            return
        if not isinstance(text, str) or not text.strip():
            return
        member = await self.member(body["team_id"], user_id)
        await self.engine.handle(
            member,
            Text(text),
            delivery_id=body.get("event_id"),
            render=partial(self.post_replies, member, channel),
        )

    async def on_home_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        user_id = event.get("user")
        if event.get("tab") != "home" or not isinstance(user_id, str):
            return
        member = await self.member(body["team_id"], user_id)
        views = self.views(member)
        link = await self.engine.verification(member.key)
        if link is not None and link.phone_e164 is not None:
            verified_at = link.verified_at
            date = (
                self.catalogue.date(verified_at.timestamp(), member.locale) if verified_at else ""
            )
            status = views.text("home.verified", phone=mask_phone(link.phone_e164), date=date)
        else:
            conversation = await self.engine.conversation(member)
            if conversation.state is State.AWAIT_CODE and conversation.phone:
                status = views.text("home.code_sent", phone=mask_phone(conversation.phone))
            else:
                status = views.text("home.not_verified")
        publish = self.client.views_publish(user_id=member.key.user_id, view=views.home(status))
        await call("views.publish", publish)

    async def on_team_join(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        user = event.get("user")
        if not self.invite_new_members or not isinstance(user, dict):
            return
        if user.get("is_bot") or not isinstance(user.get("id"), str):
            return
        key = MemberKey(PLATFORM, body["team_id"], user["id"])
        event_id = body.get("event_id")
        if event_id and not await self.engine.first_delivery(key, event_id):
            return  # a redelivery
        if await self.engine.verification(key) is not None:
            return  # verified before and rejoining: nothing to ask
        member = await self.member(key.scope, key.user_id)
        await self.direct_message(member, *self.views(member).invite())

    def _modal_member(self, body: dict[str, Any]) -> Member:
        key = MemberKey(PLATFORM, team_id_of(body), body["user"]["id"])
        locale, name = read_metadata(body["view"].get("private_metadata")) or (None, None)
        return Member(key, display_name=name, locale=locale)


def _input(view: dict[str, Any], block: str) -> str:
    value = element_state(view, block).get("value")
    return value if isinstance(value, str) else ""
