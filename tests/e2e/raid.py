"""A raid on a gated Telegram group, driven against the emulator: many accounts join one
group at a steady pace, and each newcomer's join → restriction latency is read back from the
emulator's record. Shared by the e2e raid test and ``bench/telegram_raid.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from tests.emulators.telegram import RecordedCall, TelegramEmulator


async def raid(
    telegram: TelegramEmulator,
    group: int,
    users: Sequence[int],
    *,
    seconds: float,
    on_join: Callable[[int], Awaitable[None]] | None = None,
) -> dict[int, float]:
    """Join every user to ``group``, evenly over ``seconds``; when each joined
    (``time.time()``, the emulator's clock). ``on_join(user)`` runs right after a join."""
    joined: dict[int, float] = {}
    start = time.monotonic()
    step = seconds / max(1, len(users))
    for n, user in enumerate(users):
        await asyncio.sleep(max(0.0, start + n * step - time.monotonic()))
        joined[user] = time.time()
        telegram.join(user, group)
        if on_join is not None:
            await on_join(user)
    return joined


def is_muting(call: RecordedCall) -> bool:
    """A restrictChatMember that took every permission away."""
    permissions = call.params.get("permissions") or {}
    return call.method == "restrictChatMember" and not any(permissions.values())


def restricted_at(telegram: TelegramEmulator, group: int) -> dict[int, float]:
    """When each member of ``group`` was first muted (the call took effect)."""
    first: dict[int, float] = {}
    for call in telegram.calls_to("restrictChatMember"):
        if call.params.get("chat_id") == group and call.applied_at and is_muting(call):
            first.setdefault(call.params["user_id"], call.applied_at)
    return first


def restriction_latencies(
    telegram: TelegramEmulator, group: int, joined: dict[int, float]
) -> dict[int, float]:
    """Seconds from each join to that member's restriction, for those restricted."""
    muted = restricted_at(telegram, group)
    return {user: muted[user] - at for user, at in joined.items() if user in muted}
