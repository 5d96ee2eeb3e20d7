"""Slack: the ``/verify`` modal, the bot's DM and the App Home tab, over slack-bolt.

A thin shell: Slack input becomes core events, core replies become Block Kit (see
``adapters.slack_views``). The conversation lives in the core (Redis), never in bolt.

Slack wants an answer within 3 seconds, so every listener acknowledges first and talks to
the engine afterwards (bolt runs the rest after the ack, ``process_before_response`` off).
Deliveries are deduplicated by the core with the Events API ``event_id``: bolt does not,
and in Socket Mode it sets ``X-Slack-Retry-Num: 0`` on first deliveries, so that header is
no sign of a retry.

Moderators' commands (``/verifybot``, the "Grant a role" shortcut) are in
``adapters.slack_admin``; roles and the log channel in ``adapters.slack_roles``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import ClientError, web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from adapters._runtime import until_stopped
from adapters.slack_admin import SlackDesk
from adapters.slack_inbound import is_ssl_check, parse_http, socket_frame_problem
from adapters.slack_roles import SlackRoles, mod_log
from adapters.slack_views import (
    ACTIONS_BY_ID,
    CODE_INPUT,
    CODE_VIEW,
    GRANT_SHORTCUT,
    GRANT_VIEW,
    PAGE_NEXT,
    PAGE_PREVIOUS,
    PHONE_INPUT,
    PHONE_VIEW,
    UNLINK_CANCEL,
    UNLINK_CONFIRM,
    Views,
    element_state,
    metadata,
    read_metadata,
)
from bot.engine import Outcome
from bot.flow import (
    ACTION_EVENTS,
    CodeGiven,
    PhoneGiven,
    Reply,
    Start,
    State,
    Text,
)
from bot.identity import Member, MemberKey
from bot.privacy import mask_phone
from bot.settings import ConfigError, Settings

if TYPE_CHECKING:  # the wiring imports every port; an adapter needs only its type
    from bot.bootstrap import App

PLATFORM = "slack"
log = structlog.get_logger("verifybot.slack")

#: How long a code submission may wait for the engine before the modal is acknowledged
#: with "checking…" instead of the answer (Slack gives up at 3 s).
ACK_BUDGET = 2.0
#: A member's language and name change rarely; one users.info per member per ten minutes.
PROFILE_TTL = 600.0
#: Retries after a 429, each after Slack's Retry-After.
RATE_LIMIT_RETRIES = 3


def check_settings(settings: Settings, *, socket: bool) -> None:
    """Refuse to start, in one line, without what Slack needs for this mode."""
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set: copy the bot token (xoxb-…) from the app")
    if socket:
        app_token = settings.slack_app_token
        if app_token is None:
            raise ConfigError("--socket needs SLACK_APP_TOKEN, an app-level token (xapp-…)")
        if not app_token.get_secret_value().startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    elif settings.slack_signing_secret is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set: copy it from the app's Basic Information page "
            "(or use --socket with SLACK_APP_TOKEN)"
        )


def web_client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base_url = settings.slack_api_base_url
    client = AsyncWebClient(token=token, base_url=base_url.rstrip("/") + "/")
    client.retry_handlers.append(
        AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)
    )
    return client


async def check_connection(settings: Settings) -> str:
    """Which workspace and bot user the token belongs to (``verifybot doctor``)."""
    client = web_client(settings)
    try:
        answer = await client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error")
        raise ConfigError(f"SLACK_BOT_TOKEN was refused by Slack: {error}") from None
    except (OSError, ClientError) as exc:
        raise ConfigError(f"cannot reach {settings.slack_api_base_url}: {exc}") from None
    return f"workspace {answer.get('team')} ({answer.get('team_id')}) as @{answer.get('user')}"


@dataclass(frozen=True, slots=True)
class _Profile:
    locale: str | None = None
    name: str | None = None
    #: A workspace admin or owner: Slack's own moderators.
    admin: bool = False
    fetched: float = 0.0


class _Profiles:
    """users.info answers (language, display name, admin), kept briefly in process."""

    def __init__(self, client: AsyncWebClient, ttl: float = PROFILE_TTL) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[tuple[str, str], _Profile] = {}

    async def get(self, team_id: str, user_id: str, *, max_age: float | None = None) -> _Profile:
        """The member's profile, fetched again when older than ``max_age`` (or the TTL)."""
        now = time.monotonic()
        hit = self._cache.get((team_id, user_id))
        limit = self.ttl if max_age is None else min(self.ttl, max_age)
        if hit is not None and now - hit.fetched < limit:
            return hit
        answer = await _call(
            "users.info", self.client.users_info(user=user_id, include_locale=True)
        )
        user = answer.get("user") if answer else None
        if not isinstance(user, dict):
            return _Profile()  # not cached: the next message tries again
        profile = user.get("profile") or {}
        found = _Profile(
            locale=user.get("locale"),
            name=profile.get("display_name") or profile.get("real_name") or user.get("name"),
            admin=bool(user.get("is_admin") or user.get("is_owner")),
            fetched=now,
        )
        if len(self._cache) > 10_000:  # bound the memory; a miss costs one call
            self._cache.clear()
        self._cache[(team_id, user_id)] = found
        return found


def _member(team_id: str, user_id: str, profile: _Profile) -> Member:
    key = MemberKey(PLATFORM, team_id, user_id)
    return Member(key, display_name=profile.name, locale=profile.locale)


async def _call(method: str, request: Awaitable[Any]) -> dict[str, Any] | None:
    """One Web API call; Slack's refusals become one log line, never a crash."""
    try:
        response = await request
    except SlackApiError as exc:
        log.warning("slack_api_error", method=method, error=exc.response.get("error"))
        return None
    data = response.data
    return data if isinstance(data, dict) else None


class SlackBot:
    """The listeners, with the engine and a Web API client."""

    def __init__(self, bot: App, client: AsyncWebClient) -> None:
        self.bot = bot
        self.engine = bot.engine
        self.catalogue = bot.catalogue
        self.client = client
        self.profiles = _Profiles(client)
        roles = SlackRoles(client)
        self.moderation = bot.moderation(
            {PLATFORM: roles}, mod_log(roles, bot.settings, bot.catalogue)
        )
        bot.follow_verifications(PLATFORM, self.moderation)  # no gate on Slack

    async def member(self, team_id: str, user_id: str) -> Member:
        return _member(team_id, user_id, await self.profiles.get(team_id, user_id))

    async def moderator(self, team_id: str, user_id: str) -> tuple[Member, bool]:
        """The member, and whether Slack makes them a moderator (a workspace admin or
        owner), checked again after MODERATOR_CACHE_SECONDS."""
        max_age = float(self.bot.settings.moderator_cache_seconds)
        profile = await self.profiles.get(team_id, user_id, max_age=max_age)
        return _member(team_id, user_id, profile), profile.admin

    async def call(self, method: str, request: Awaitable[Any]) -> dict[str, Any] | None:
        return await _call(method, request)

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
        opened = await _call(
            "conversations.open", self.client.conversations_open(users=member.key.user_id)
        )
        channel = (opened or {}).get("channel") or {}
        if isinstance(channel, dict) and channel.get("id"):
            await self.post(channel["id"], text, blocks)

    async def post_replies(self, member: Member, channel: str | None, outcome: Outcome) -> None:
        if channel and outcome.replies:
            await self.post(channel, *self.views(member).message(outcome.replies))

    async def post(self, channel: str, text: str, blocks: list[Any]) -> None:
        await _call(
            "chat.postMessage",
            self.client.chat_postMessage(channel=channel, text=text, blocks=blocks),
        )

    async def open_modal(self, member: Member, trigger_id: str) -> None:
        # The trigger_id lives ~3 s: Start costs a Redis and a database lookup, well within.
        async def render(outcome: Outcome) -> None:
            view = self.modal_for(member, outcome)
            await _call("views.open", self.client.views_open(trigger_id=trigger_id, view=view))

        await self.engine.handle(member, Start(), render=render)

    async def update_modal(self, member: Member, view: dict[str, Any], outcome: Outcome) -> None:
        update = self.client.views_update(view_id=view["id"], view=self.modal_for(member, outcome))
        await _call("views.update", update)

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
        team_id = (body.get("team") or {}).get("id") or body["user"]["team_id"]
        member = await self.member(team_id, body["user"]["id"])
        view = body.get("view") or {}
        if view.get("type") == "modal":

            async def in_modal(outcome: Outcome) -> None:
                modal = self.modal_for(member, outcome)
                update = self.client.views_update(
                    view_id=view["id"], hash=view.get("hash"), view=modal
                )
                await _call("views.update", update)

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
            date = link.verified_at.astimezone(UTC).strftime("%Y-%m-%d") if link.verified_at else ""
            status = views.text("home.verified", phone=mask_phone(link.phone_e164), date=date)
        else:
            conversation = await self.engine.conversation(member)
            if conversation.state is State.AWAIT_CODE and conversation.phone:
                status = views.text("home.code_sent", phone=mask_phone(conversation.phone))
            else:
                status = views.text("home.not_verified")
        publish = self.client.views_publish(user_id=member.key.user_id, view=views.home(status))
        await _call("views.publish", publish)

    async def on_team_join(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        user = event.get("user")
        if not self.bot.settings.slack_invite_new_members or not isinstance(user, dict):
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
        user = body["user"]
        team_id = (body.get("team") or {}).get("id") or user.get("team_id", "")
        locale, name = read_metadata(body["view"].get("private_metadata")) or (None, None)
        return Member(MemberKey(PLATFORM, team_id, user["id"]), display_name=name, locale=locale)


def _input(view: dict[str, Any], block: str) -> str:
    value = element_state(view, block).get("value")
    return value if isinstance(value, str) else ""


async def _on_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
    if isinstance(error, BoltUnhandledRequestError):
        # A well-formed request no listener takes (an event type the app is subscribed to
        # but does not act on, a button from an older version). bolt answers 404 and logs
        # the whole body, but Slack retries a delivery that gets no 2xx within 3 s, three
        # times (Slack's Events API docs, "Retries", docs.slack.dev/apis/events-api; the
        # rule as ../shared/specs/README.md records it). So: 200, and a line without content.
        event = body.get("event")
        log.info(
            "slack_request_unhandled",
            kind=body.get("type"),
            event_type=event.get("type") if isinstance(event, dict) else None,
        )
        return BoltResponse(status=200, body="")
    log.error("slack_listener_failed", error=type(error).__name__, kind=body.get("type"))
    return None


#: What the app registers; the manifest test checks config/slack-app-manifest.yml lists them.
COMMANDS = ("/verify", "/verifybot")
EVENTS = ("message.im", "app_home_opened", "team_join")
SHORTCUTS = (GRANT_SHORTCUT,)


def build_app(bot: App, *, client: AsyncWebClient | None = None) -> AsyncApp:
    """The bolt app with every listener: ``serve`` uses it, and so do the tests."""
    settings = bot.settings
    client = client or web_client(settings)
    secret = settings.slack_signing_secret
    slack = SlackBot(bot, client)
    desk = SlackDesk(slack)
    app = AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else "",
        # Ack first, work after: Slack retries anything slower than 3 s.
        process_before_response=False,
        # Unhandled requests go to _on_error, which acknowledges them.
        raise_error_for_unhandled_request=True,
    )
    app.command(COMMANDS[0])(slack.on_command)
    app.view_submission(PHONE_VIEW)(slack.on_phone_submitted)
    app.view_submission(CODE_VIEW)(slack.on_code_submitted)
    for action_id in ACTIONS_BY_ID:
        app.action(action_id)(slack.on_action)
    app.event("message")(slack.on_message)
    app.event("app_home_opened")(slack.on_home_opened)
    app.event("team_join")(slack.on_team_join)
    app.command(COMMANDS[1])(desk.on_command)
    app.message_shortcut(GRANT_SHORTCUT)(desk.on_grant_shortcut)
    app.view_submission(GRANT_VIEW)(desk.on_grant_submitted)
    app.action(PAGE_PREVIOUS)(desk.on_page)
    app.action(PAGE_NEXT)(desk.on_page)
    app.action(UNLINK_CONFIRM)(desk.on_unlink_confirmed)
    app.action(UNLINK_CANCEL)(desk.on_unlink_cancelled)
    app.error(_on_error)
    return app


def web_app(slack_app: AsyncApp, path: str, signing_secret: str) -> web.Application:
    """Events, commands and interactivity on one endpoint.

    The signature is checked here, before anything reads the body (bolt checks it again),
    and a signed body that is not what Slack sends is refused here (``adapters.slack_inbound``)."""
    verifier = SignatureVerifier(signing_secret)

    async def dispatch(request: web.Request) -> web.Response:
        raw = await request.read()
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and is_ssl_check(text, request.content_type):
            return web.Response(status=200)
        if (
            text is None
            or not (timestamp.isascii() and timestamp.isdigit())
            or not verifier.is_valid(text, timestamp, signature)
        ):
            return web.json_response({"error": "invalid request"}, status=401)
        parsed = parse_http(text, request.content_type)
        if isinstance(parsed, str):
            log.warning("slack_request_malformed", reason=parsed, mode="http", size=len(raw))
            # Sending it again will not mend it: Slack honours X-Slack-No-Retry on a non-2xx
            # answer (Events API docs, "Retries": "turning retries off").
            return web.json_response(
                {"error": "malformed request"}, status=400, headers={"X-Slack-No-Retry": "1"}
            )
        bolt_request = AsyncBoltRequest(
            body=text,
            query=request.query_string,
            headers=dict(request.headers),
        )
        return await to_aiohttp_response(await slack_app.async_dispatch(bolt_request))

    application = web.Application()
    application.router.add_post(path, dispatch)
    return application


class _SocketModeClient(SocketModeClient):
    """slack-sdk's Socket Mode client, with malformed frames dropped before it parses them:
    it would log a traceback for each and leave the envelope unacknowledged, so Slack
    would send it again."""

    async def enqueue_message(self, message: str) -> None:
        problem, envelope_id = socket_frame_problem(message)
        if problem is None:
            await super().enqueue_message(message)
            return
        log.warning("slack_request_malformed", reason=problem, mode="socket", size=len(message))
        if envelope_id is not None:
            await self.send_socket_mode_response({"envelope_id": envelope_id})


class _SocketModeHandler(AsyncSocketModeHandler):
    """bolt's handler, on the client above (bolt's ``__init__`` builds its own client, and
    a second one would leave an aiohttp session open)."""

    def __init__(self, app: AsyncApp, app_token: str) -> None:
        self.app = app
        self.app_token = app_token
        self.client = _SocketModeClient(
            app_token=app_token, logger=app.logger, web_client=app.client, ping_interval=10
        )
        # As in bolt: its handle() is typed for the aiohttp client, the list for the base.
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]


def socket_handler(bot: App, slack_app: AsyncApp) -> AsyncSocketModeHandler:
    token = bot.settings.slack_app_token
    if token is None:
        raise ConfigError("--socket needs SLACK_APP_TOKEN")
    return _SocketModeHandler(slack_app, token.get_secret_value())


async def serve(bot: App, *, socket: bool = False) -> None:
    """Run until cancelled: HTTP on LISTEN_HOST:PORT, or Socket Mode out to Slack."""
    slack_app = build_app(bot)
    settings = bot.settings
    if socket:
        handler = socket_handler(bot, slack_app)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("slack_socket_mode_connected")
        try:
            await until_stopped()
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]
        return
    secret = settings.slack_signing_secret
    if secret is None:
        raise ConfigError("SLACK_SIGNING_SECRET is not set")
    runner = web.AppRunner(
        web_app(slack_app, settings.slack_events_path, secret.get_secret_value())
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.listen_host, settings.port).start()
        log.info(
            "slack_http_listening",
            host=settings.listen_host,
            port=settings.port,
            path=settings.slack_events_path,
        )
        await until_stopped()
    finally:
        await runner.cleanup()
