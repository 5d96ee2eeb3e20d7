"""Long polling that confirms an update to Telegram only once it has been handled.

Telegram counts an update as confirmed once getUpdates is called with an ``offset`` above
its id. PTB's Updater asks for the next batch right after queueing the last one, and calls
getUpdates once more on stop, so an update still being handled when the process stops is
confirmed all the same, and lost. Here the offset stays at the oldest update not yet handled:
an update that a stop cut short is fetched again on the next start, and one that was handled
but fetched again is dropped by the per-delivery guard (the engine's load, and
``Engine.first_delivery`` for updates that are not a member's message).

The price: while updates are in flight, getUpdates returns at once with the held ones in
front of any new ones (at most 100 a call), so the loop waits ``HELD_POLL_INTERVAL``
between such polls instead of long-polling, and an update handled for more than
``HOLD_LIMIT`` no longer holds back the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import structlog
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application

from adapters._runtime import InFlight, cancel_all

log = structlog.get_logger("verifybot.telegram")

#: getUpdates' long-poll timeout when nothing is held (Telegram's recommended style).
POLL_TIMEOUT = 10
#: Between polls while updates are held (those polls return at once).
HELD_POLL_INTERVAL = 0.1
#: An update handled for longer than this stops holding the offset (handling is bounded
#: by Vonage's and the database's timeouts, far below it).
HOLD_LIMIT = 60.0
#: Waits after a failed getUpdates, growing to the last.
_BACKOFF = (0.5, 1.0, 2.0, 5.0)

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class Polling:
    """``start()`` after the application has started; ``stop(grace)`` before it stops."""

    def __init__(
        self,
        application: AnyApplication,
        *,
        allowed_updates: Sequence[str],
        in_flight: InFlight,
    ) -> None:
        self.application = application
        self.allowed_updates = list(allowed_updates)
        self.in_flight = in_flight
        #: update_id -> (task, when it started), until it was handled.
        self._held: dict[int, tuple[asyncio.Task[None], float]] = {}
        self._highest = -1
        self._task: asyncio.Task[None] | None = None
        self._all_handled = asyncio.Event()
        self._stopping = False

    def offset(self) -> int:
        """The offset to ask with: every update below it has been handled."""
        now = asyncio.get_running_loop().time()
        held = [uid for uid, (_, started) in self._held.items() if now - started < HOLD_LIMIT]
        if held:
            return min(held)
        return self._highest + 1 if self._highest >= 0 else 0

    async def start(self) -> None:
        # As PTB's Updater does: a webhook left set would answer getUpdates with 409.
        await self.application.bot.delete_webhook(drop_pending_updates=False)
        self._task = asyncio.create_task(self._poll(), name="telegram-polling")

    async def stop(self, grace: float) -> None:
        """Stop asking for updates, drop those still waiting for their turn, give those
        under way ``grace`` seconds, cancel the rest, and confirm what was handled: only the
        unfinished ones come back on the next start."""
        self._stopping = True
        if self._task is not None:
            # The request layer may turn the cancellation of a long poll into a NetworkError,
            # which the loop would retry: the flag ends it then.
            await cancel_all([self._task])
        await self.in_flight.drain(grace, drop_waiting=True)
        offset = self.offset()
        if offset > 0:
            try:
                await self.application.bot.get_updates(
                    offset=offset, limit=1, timeout=0, allowed_updates=self.allowed_updates
                )
            except TelegramError as exc:  # they come back on the next start: handled twice never
                log.warning("telegram_confirm_failed", error=type(exc).__name__)
        log.info("telegram_polling_stopped", unfinished=len(self._held))

    async def _poll(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            holding = bool(self._held)
            asked = loop.time()
            try:
                updates = await self.application.bot.get_updates(
                    offset=self.offset(),
                    timeout=0 if holding else POLL_TIMEOUT,
                    allowed_updates=self.allowed_updates,
                )
            except Exception as exc:  # a network error, or an answer PTB could not read
                if self._stopping:
                    return
                wait = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                level = log.warning if isinstance(exc, TelegramError) else log.error
                level("telegram_poll_failed", error=type(exc).__name__, retry_in=wait)
                await asyncio.sleep(wait)
                continue
            failures = 0
            if self._stopping:  # a batch that came back as the stop began: not confirmed
                return
            for update in updates:
                if update.update_id > self._highest:
                    self._highest = update.update_id
                    self._begin(update)
            if self._held:
                # Held updates come back at once: ask again after a pause, or as soon as
                # everything is handled (then a long poll waits for what is new).
                self._all_handled.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._all_handled.wait(), asked + HELD_POLL_INTERVAL - loop.time()
                    )

    def _begin(self, update: Update) -> None:
        application = self.application
        task = asyncio.create_task(
            application.update_processor.process_update(update, application.process_update(update)),
            name=f"telegram-update-{update.update_id}",
        )
        self.in_flight.watch(task)
        self._held[update.update_id] = (task, asyncio.get_running_loop().time())

        def handled(done: asyncio.Task[None]) -> None:
            if not done.cancelled():  # a cancelled one is fetched again on the next start
                self._held.pop(update.update_id, None)
                if not self._held:
                    self._all_handled.set()
            if not done.cancelled() and done.exception() is not None:
                log.error("telegram_update_failed", error=type(done.exception()).__name__)

        task.add_done_callback(handled)
