"""How the running bot takes updates from PTB: in order per member, paced per group.

PTB runs handlers through an update processor and sends through a rate limiter; these two
fit them to a bot that may be raided: one group's wave of joins must not starve everyone else.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import AIORateLimiter, BaseUpdateProcessor

from adapters._runtime import InFlight, Slots

#: Updates handled at once (at least twice one group's share, so that a raid in one group
#: leaves room for everyone else), and updates waiting their turn before PTB holds more.
CONCURRENT_UPDATES = 64
QUEUED_UPDATES = 1024


class PaceMessages(AIORateLimiter):
    """AIORateLimiter, with its per-group pace (20/min) kept for messages only.

    PTB counts every call that names a group, so a wave of 50 joins would queue 50
    restrictions behind the group's message budget and leave newcomers free to post for
    minutes. Admin actions and deletions are not messages: they skip both paces (Telegram's
    30/s is for messages too) and keep the 429 retries.
    """

    @classmethod
    def at(cls, per_second: int, *, max_retries: int) -> PaceMessages:
        """Messages paced at ``per_second`` overall (0: no overall pace, for a local Bot API
        server or paid broadcasts); the per-group budget of 20 a minute stays either way."""
        # AIORateLimiter builds no overall limiter when the rate is 0 (PTB 22.8).
        return cls(overall_max_rate=per_second, overall_time_period=1, max_retries=max_retries)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if not endpoint.startswith(("send", "edit", "copy", "forward")):
            data = {name: value for name, value in data.items() if name != "chat_id"}
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


class InOrderPerMember(BaseUpdateProcessor):
    """A member's updates in order; different members' at once, up to ``per_chat`` per chat.

    The core keeps a member's conversation consistent whatever the order, but a number typed
    right after /start must be read after it. Nothing else needs an order: the gate's Redis
    scripts make each member's hold atomic, so a raid's joins, leaves and service messages
    are handled side by side, and each newcomer is muted within a round trip or two instead
    of waiting behind everyone who joined before them. Waiting for the member's turn, then a
    slot of their chat, happens before taking one of the ``running`` slots, so one chatty
    member or one besieged group cannot starve everyone else.
    """

    def __init__(self, *, per_chat: int, running: int = CONCURRENT_UPDATES) -> None:
        super().__init__(QUEUED_UPDATES)
        self._per_chat = per_chat
        self._running = Slots(max(running, 2 * per_chat))
        self._turns: dict[tuple[int, int], asyncio.Lock] = {}
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._waiting: Counter[tuple[int, int]] = Counter()
        self._in_chat: Counter[int] = Counter()
        #: Every update from the moment PTB hands it over, for a stop's grace period.
        self.in_flight = InFlight()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        with self.in_flight.handling():
            try:
                await self._in_turn(update, coroutine)
            except asyncio.CancelledError:
                if inspect.iscoroutine(coroutine):  # cancelled before its turn: never started
                    coroutine.close()
                raise

    async def _in_turn(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _ordering_key(update)
        if key is None:
            async with self._running:
                self.in_flight.started()
                await coroutine
            return
        chat = key[0]
        turn = self._turns.setdefault(key, asyncio.Lock())
        slots = self._slots.setdefault(chat, asyncio.Semaphore(self._per_chat))
        self._waiting[key] += 1
        self._in_chat[chat] += 1
        try:
            async with turn, slots, self._running:
                self.in_flight.started()
                await coroutine
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._turns[key]
            self._in_chat[chat] -= 1
            if not self._in_chat[chat]:
                del self._in_chat[chat], self._slots[chat]

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def _ordering_key(update: object) -> tuple[int, int] | None:
    """(chat, member) for an update: the member a change of membership is about, otherwise
    whoever sent it. In a private chat both are the member."""
    if not isinstance(update, Update) or update.effective_chat is None:
        return None
    change = update.chat_member or update.my_chat_member
    user = change.new_chat_member.user if change is not None else update.effective_user
    return update.effective_chat.id, user.id if user is not None else 0
