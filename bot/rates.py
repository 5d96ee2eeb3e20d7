"""A rate limit's value: at most so many events per sliding window."""

from __future__ import annotations

from dataclasses import dataclass


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
