"""What happens to a member who does not verify in time: one community's choice.

Written as in the settings file and in ``/settings``: ``kick`` (they may rejoin), ``mute``
(they stay, restricted), ``decline`` (a join request is declined; a member who joined directly
is kicked), ``ban`` (forever) or ``ban:7d`` (for a duration, written like any other duration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from bot.rates import format_duration, parse_seconds

Kind: TypeAlias = Literal["kick", "ban", "mute", "decline"]
KINDS: tuple[Kind, ...] = ("kick", "ban", "mute", "decline")


@dataclass(frozen=True, slots=True)
class Consequence:
    kind: Kind = "kick"
    #: How long a ban lasts, in seconds; 0 is forever. Only ``ban`` has one.
    ban_for: int = 0

    def __str__(self) -> str:
        if self.kind == "ban" and self.ban_for:
            return f"ban:{format_duration(self.ban_for)}"
        return self.kind


def parse_consequence(value: str) -> Consequence:
    """``kick``, ``mute``, ``decline``, ``ban`` or ``ban:7d``; a one-line ValueError otherwise."""
    text = value.strip().lower()
    kind, _, duration = text.partition(":")
    if kind not in KINDS:
        raise ValueError(f"{value!r} is not one of kick, ban, ban:7d, mute, decline")
    if kind != "ban":
        if duration:
            raise ValueError(f"{value!r}: only a ban takes a duration, as in ban:7d")
        return Consequence(kind)
    # Telegram treats a ban under 30 s or over 366 days as forever (Bot API, banChatMember).
    seconds = parse_seconds(duration) if duration else 0
    if seconds and not 30 <= seconds <= 366 * 86400:
        raise ValueError(f"{value!r}: a ban lasts from 30s to 366d, or forever as plain ban")
    return Consequence("ban", seconds)
