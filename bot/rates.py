"""A rate limit's value: at most so many events per sliding window."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Duration units as the settings write them.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` events per sliding ``window`` seconds."""

    count: int
    window: int

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.window)}"


def format_duration(seconds: int) -> str:
    """Seconds as the settings write them: ``7d``, ``2h``, ``15m`` or ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_seconds(value: str | int) -> int:
    """``"90"``, ``"15m"``, ``"2h"`` or ``"1d"`` -> seconds; ``"0"`` or ``"off"`` -> 0."""
    if isinstance(value, int):
        return value
    text = value.strip().lower()
    if text in ("", "off", "none", "0"):
        return 0
    match = re.match(r"^(\d+)\s*([smhd]?)$", text)
    if not match:
        raise ValueError(f"{value!r} is not a duration like 90, 15m, 2h or 1d")
    return int(match.group(1)) * UNITS[match.group(2) or "s"]
