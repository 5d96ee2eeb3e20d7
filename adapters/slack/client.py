"""The Slack Web API client: the client factory, and the call wrappers that turn Slack's
refusals into one log line or a problem word the catalogue explains."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Final

import structlog
from aiohttp import ClientError
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot import metrics
from bot.settings import ConfigError, Settings

log = structlog.get_logger("verifybot.slack")

PLATFORM: Final = "slack"
#: Retries after a 429, each after Slack's Retry-After.
RATE_LIMIT_RETRIES = 3

#: Slack's error names, as the problem words the catalogue explains (``mod.problem.*``).
_PROBLEMS: Final = {
    "is_archived": "is_archived",
    "not_in_channel": "not_in_channel",
    "channel_not_found": "channel_not_found",
    "plan_upgrade_required": "plan_upgrade_required",
    "missing_scope": "not_enough_rights",
    "restricted_action": "not_enough_rights",
    "not_allowed_token_type": "not_enough_rights",
    "permission_denied": "not_enough_rights",
    "no_permission": "not_enough_rights",
    "ratelimited": "rate_limited",
    "rate_limited": "rate_limited",
}
#: What a network failure looks like through slack-sdk's aiohttp client.
_UNREACHABLE: Final = (SlackClientError, ClientError, OSError, TimeoutError)


#: Slack's error names that mean "not allowed", for ``verifybot_platform_calls``.
_FORBIDDEN: Final = frozenset(
    {"not_authed", "invalid_auth", "account_inactive", "token_revoked", "is_archived",
     "not_in_channel", "cannot_dm_bot", "user_not_found", "channel_not_found"}
    | {error for error, problem in _PROBLEMS.items() if problem == "not_enough_rights"}
)  # fmt: skip


def outcome_of(error: str | None, status: int) -> str:
    """A refused Web API call's outcome, as ``verifybot_platform_calls`` labels it."""
    if status == 429 or _PROBLEMS.get(error or "") == "rate_limited":
        return "429"
    if status >= 500:
        return "error"
    return "forbidden" if error in _FORBIDDEN else "bad_request"


class CountedWebClient(AsyncWebClient):
    """slack-sdk's client, with every call counted by method and outcome (``bot.metrics``)."""

    async def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict[str, Any] | None = None,
        data: dict[str, Any] | Any | None = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
    ) -> AsyncSlackResponse:
        outcome = "network"
        try:
            response = await super().api_call(
                api_method,
                http_verb=http_verb,
                files=files,
                data=data,
                params=params,
                json=json,
                headers=headers,
                auth=auth,
            )
            outcome = "ok"
            return response
        except SlackApiError as exc:
            outcome = outcome_of(exc.response.get("error"), exc.response.status_code)
            raise
        finally:
            metrics.PLATFORM_CALLS.labels(PLATFORM, api_method, outcome).inc()


def web_client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base_url = settings.slack_api_base_url
    client = CountedWebClient(token=token, base_url=base_url.rstrip("/") + "/")
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


async def call(method: str, request: Awaitable[Any]) -> dict[str, Any] | None:
    """One Web API call; Slack's refusals become one log line and None, never a crash."""
    try:
        response = await request
    except SlackApiError as exc:
        log.warning("slack_api_error", method=method, error=exc.response.get("error"))
        return None
    data = response.data
    return data if isinstance(data, dict) else None


class Refused(Exception):
    """A call that did not happen, with its problem word."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


async def ask(method: str, request: Awaitable[Any]) -> dict[str, Any]:
    """One Web API call; a refusal or a network failure becomes ``Refused``."""
    try:
        response = await request
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "unknown")
        raise Refused(_PROBLEMS.get(error, error)) from None
    except _UNREACHABLE as exc:
        log.debug("slack_unreachable", method=method, error=type(exc).__name__)
        raise Refused("not_connected") from None
    data = response.data
    return data if isinstance(data, dict) else {}


def team_id_of(body: Mapping[str, Any]) -> str:
    """The workspace of whoever pressed or submitted something: the payload's ``team``, or,
    when it is null (an org-wide app in Enterprise Grid), the user's own ``team_id``, as
    Slack's interactivity payload reference documents. ``adapters.slack.inbound`` refuses a
    request with neither, so an empty id is never a member's scope."""
    team = body.get("team")
    team_id = team.get("id") if isinstance(team, dict) else None
    if isinstance(team_id, str) and team_id:
        return team_id
    user = body.get("user")
    user_team = user.get("team_id") if isinstance(user, dict) else None
    if isinstance(user_team, str) and user_team:
        return user_team
    raise ValueError("the request names no team")
