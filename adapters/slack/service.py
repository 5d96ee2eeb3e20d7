"""The running Slack app: settings checked, the bolt app built and wired, served over HTTP
or Socket Mode. The member's listeners are in ``chat``, the moderators' in ``desk``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.listener_matcher.async_listener_matcher import AsyncListenerMatcher
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from adapters._runtime import InFlight, add_health_routes, until_stopped
from adapters.slack.chat import SlackChat
from adapters.slack.client import PLATFORM, web_client
from adapters.slack.desk import SlackDesk
from adapters.slack.inbound import is_ssl_check, parse_http, socket_frame_problem
from adapters.slack.profiles import Profiles
from adapters.slack.roles import SlackRoles, mod_log
from adapters.slack.views import (
    ACTIONS_BY_ID,
    CODE_VIEW,
    GRANT_SHORTCUT,
    GRANT_VIEW,
    PAGE_NEXT,
    PAGE_PREVIOUS,
    PHONE_VIEW,
    UNLINK_CANCEL,
    UNLINK_CONFIRM,
)
from bot.health import Health
from bot.settings import ConfigError, Settings

if TYPE_CHECKING:  # the wiring imports every port; an adapter needs only its type
    from bot.app import App

log = structlog.get_logger("verifybot.slack")


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


class _App(AsyncApp):
    """bolt's app, with each listener counted in ``in_flight`` while it runs (after the ack,
    in a task of its own). Every registration (event, command, action, view…) goes through
    ``_register_listener``, bolt 1.x's one place for it."""

    def __init__(self, in_flight: InFlight, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_flight = in_flight

    def _register_listener(
        self,
        functions: Sequence[Callable[..., Awaitable[BoltResponse | None]]],
        primary_matcher: AsyncListenerMatcher,
        matchers: Sequence[Callable[..., Awaitable[bool]]] | None,
        middleware: Sequence[Callable[..., Any] | AsyncMiddleware] | None,
        auto_acknowledgement: bool = False,
        ack_timeout: int = 3,
    ) -> Callable[..., Awaitable[BoltResponse | None]] | None:
        return super()._register_listener(
            [self.in_flight.tracked(function) for function in functions],
            primary_matcher,
            matchers,
            middleware,
            auto_acknowledgement,
            ack_timeout,
        )


#: What the app registers; the manifest test checks config/slack-app-manifest.yml lists them.
COMMANDS = ("/verify", "/verifybot")
EVENTS = ("message.im", "app_home_opened", "team_join")
SHORTCUTS = (GRANT_SHORTCUT,)


def build_app(
    app: App, *, client: AsyncWebClient | None = None, in_flight: InFlight | None = None
) -> AsyncApp:
    """The bolt app with every listener: ``serve`` uses it, and so do the tests. Listeners
    run after the ack; ``in_flight`` counts them, so that a stop lets them finish."""
    settings = app.settings
    client = client or web_client(settings)
    secret = settings.slack_signing_secret
    profiles = Profiles(client)
    slack = SlackChat(
        app.engine,
        app.catalogue,
        client,
        profiles,
        invite_new_members=settings.slack_invite_new_members,
    )
    roles = SlackRoles(client)
    moderation = app.moderation({PLATFORM: roles}, mod_log(roles, settings, app.catalogue))
    app.follow_verifications(PLATFORM, moderation)  # no gate on Slack
    desk = SlackDesk(
        moderation,
        client,
        profiles,
        app.catalogue,
        moderator_max_age=float(settings.moderator_cache_seconds),
    )
    bolt = _App(
        in_flight or InFlight(),
        client=client,
        signing_secret=secret.get_secret_value() if secret else "",
        # Ack first, work after: Slack retries anything slower than 3 s.
        process_before_response=False,
        # Unhandled requests go to _on_error, which acknowledges them.
        raise_error_for_unhandled_request=True,
        # Without a base logger bolt gives each of its loggers the root's level, which
        # would undo bot.logs' quieting of "slack_bolt" (its DEBUG lines print payloads).
        logger=logging.getLogger("slack_bolt"),
    )
    bolt.command(COMMANDS[0])(slack.on_command)
    bolt.view_submission(PHONE_VIEW)(slack.on_phone_submitted)
    bolt.view_submission(CODE_VIEW)(slack.on_code_submitted)
    for action_id in ACTIONS_BY_ID:
        bolt.action(action_id)(slack.on_action)
    bolt.event("message")(slack.on_message)
    bolt.event("app_home_opened")(slack.on_home_opened)
    bolt.event("team_join")(slack.on_team_join)
    bolt.command(COMMANDS[1])(desk.on_command)
    bolt.message_shortcut(GRANT_SHORTCUT)(desk.on_grant_shortcut)
    bolt.view_submission(GRANT_VIEW)(desk.on_grant_submitted)
    bolt.action(PAGE_PREVIOUS)(desk.on_page)
    bolt.action(PAGE_NEXT)(desk.on_page)
    bolt.action(UNLINK_CONFIRM)(desk.on_unlink_confirmed)
    bolt.action(UNLINK_CANCEL)(desk.on_unlink_cancelled)
    bolt.error(_on_error)
    return bolt


def web_app(slack_app: AsyncApp, path: str, signing_secret: str) -> web.Application:
    """Events, commands and interactivity on one endpoint.

    The signature is checked here, before anything reads the body (bolt checks it again),
    and a signed body that is not what Slack sends is refused here (``adapters.slack.inbound``)."""
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


def socket_handler(app: App, slack_app: AsyncApp) -> AsyncSocketModeHandler:
    token = app.settings.slack_app_token
    if token is None:
        raise ConfigError("--socket needs SLACK_APP_TOKEN")
    return _SocketModeHandler(slack_app, token.get_secret_value())


async def accept_token(client: AsyncWebClient, health: Health) -> None:
    """Ask Slack whose the bot token is (``auth.test``): readiness waits for its yes."""
    try:
        await client.auth_test()
    except SlackApiError as exc:
        log.error("slack_token_refused", error=exc.response.get("error"))
        return
    except Exception as exc:  # unreachable at start: not ready, and the log says why
        log.error("slack_token_unchecked", error=type(exc).__name__)
        return
    health.token_accepted(PLATFORM)


async def serve(app: App, *, socket: bool = False, health: Health | None = None) -> None:
    """Run until SIGINT or SIGTERM: HTTP on LISTEN_HOST:PORT, or Socket Mode out to Slack.
    ``health`` is served beside the events endpoint in HTTP mode.

    On the signal no new request is taken (Slack sends an unacknowledged Socket Mode
    envelope again); listeners already running get SHUTDOWN_GRACE_SECONDS to finish."""
    in_flight = InFlight()
    slack_app = build_app(app, in_flight=in_flight)
    settings = app.settings
    grace = float(settings.shutdown_grace_seconds)
    if health is not None:
        await accept_token(slack_app.client, health)
    if socket:
        handler = socket_handler(app, slack_app)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("slack_socket_mode_connected")
        try:
            await until_stopped()
        finally:
            log.info("slack_stopping", in_flight=len(in_flight), grace=grace)
            await handler.close_async()  # type: ignore[no-untyped-call]
            await in_flight.drain(grace)
        return
    secret = settings.slack_signing_secret
    if secret is None:
        raise ConfigError("SLACK_SIGNING_SECRET is not set")
    application = web_app(slack_app, settings.slack_events_path, secret.get_secret_value())
    if health is not None:
        add_health_routes(application, health)
    runner = web.AppRunner(application, shutdown_timeout=grace)
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
        log.info("slack_stopping", in_flight=len(in_flight), grace=grace)
        await runner.cleanup()
        await in_flight.drain(grace)
