"""Telegram: members verify in a private chat with the bot; groups can be gated until they do.

- ``client``: the Bot factory, Bot API calls and their refusals as problem words;
- ``chat``: the member's private chat; ``gate``: groups held until members verify;
- ``roles``: what a role means on Telegram, and the moderators' log chat;
- ``desk``: the moderators' commands;
- ``updates``, ``http``: how PTB takes updates and makes calls; ``service``: the wiring.

The shell needs only what is named here.
"""

from adapters.telegram.client import PLATFORM, check_connection, connected_bot
from adapters.telegram.service import build_application, check_settings, serve
from adapters.telegram.updates import PaceMessages

__all__ = [
    "PLATFORM",
    "PaceMessages",
    "build_application",
    "check_connection",
    "check_settings",
    "connected_bot",
    "serve",
]
