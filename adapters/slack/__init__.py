"""Slack: members verify in the ``/verify`` modal, the bot's DM or its App Home tab.

- ``client``: the Web API client, its calls and Slack's refusals as problem words;
- ``chat``: the member's listeners; ``views``: Block Kit; ``profiles``: who a user is;
- ``roles``: what a role means on Slack, and the moderators' log channel;
- ``desk``: ``/verifybot`` and the "Grant a role" shortcut;
- ``inbound``: requests checked before bolt reads them; ``service``: the wiring and serving.

The shell needs only what is named here.
"""

from adapters.slack.client import PLATFORM, check_connection, web_client
from adapters.slack.service import (
    COMMANDS,
    EVENTS,
    SHORTCUTS,
    build_app,
    check_settings,
    serve,
    socket_handler,
    web_app,
)

__all__ = [
    "COMMANDS",
    "EVENTS",
    "PLATFORM",
    "SHORTCUTS",
    "build_app",
    "check_connection",
    "check_settings",
    "serve",
    "socket_handler",
    "web_app",
    "web_client",
]
