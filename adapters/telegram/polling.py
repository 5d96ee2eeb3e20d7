"""Long polling that loses no update to a stop: each batch goes to an inbox in Redis first.

Telegram counts an update as confirmed once getUpdates is called with an ``offset`` above
its id, and PTB's Updater asks for the next batch right after queueing the last one, so an
update still being handled when the process stops would be lost. Here each batch is written
to the bot's inbox (``bot.inbox``, one round trip) before the offset moves past it; an update
leaves the inbox once handled (removals ride with the next batch's write, or a timer's).
On the next start, what a stop or a crash cut short is read back from the inbox and handled
first. An update handled but not yet removed comes back too, and the per-delivery guard
drops it (the engine's load, and ``Engine.first_delivery`` for updates that are not a
member's message).

If Redis cannot be written, the batch is kept in memory and written again after a backoff,
and the offset stays: Telegram still holds the batch, should the process stop meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import structlog
from redis.exceptions import RedisError
from telegram import Bot, Contact, Message, MessageEntity, Update, User
from telegram.error import TelegramError
from telegram.ext import Application

from adapters._runtime import InFlight, cancel_all
from bot.inbox import UpdateInbox

log = structlog.get_logger("verifybot.telegram")

#: getUpdates' long-poll timeout (Telegram's recommended style).
POLL_TIMEOUT = 10
#: getUpdates' read timeout, as Bot.get_updates sets it: the long poll's plus a request's 5 s.
_READ_TIMEOUT = POLL_TIMEOUT + 5.0
#: How often handled updates are removed from the inbox when no batch comes to carry them.
FLUSH_INTERVAL = 1.0
#: Waits after a failed getUpdates or inbox write, growing to the last.
_BACKOFF = (0.5, 1.0, 2.0, 5.0)
#: The fields of a member's plain message (text, a command, a shared contact): what
#: ``parse_update`` builds itself; any other field and PTB's own parser does it all.
_PLAIN_MESSAGE = frozenset({"message_id", "from", "chat", "date", "text", "entities", "contact"})

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def _backoff(failures: int) -> float:
    return _BACKOFF[min(failures, len(_BACKOFF) - 1)]


def parse_update(raw: dict[str, Any], bot: Bot) -> Update:
    """``Update.de_json``, the same objects, at two thirds of its CPU for a plain message.

    ``Message.de_json`` calls a converter for each of its ~110 optional fields, present or
    not: for a text it was a third of the ~90 µs an update took (bench/README.md). A message
    with only ``_PLAIN_MESSAGE``'s fields has those few converted as PTB converts them (the
    same classes' ``de_json``, the date and the chat by ``Message._de_json``); anything else
    goes to PTB whole. tests/unit/test_telegram_parse.py compares the two, object by object.
    """
    message = raw.get("message")
    if (
        len(raw) != 2
        or not isinstance(message, dict)
        or not message.keys() <= _PLAIN_MESSAGE
        or not message.get("date")  # 0 would be an InaccessibleMessage
    ):
        return Update.de_json(raw, bot)
    data = dict(message)
    sender = data.pop("from", None)
    data["from_user"] = None if sender is None else User.de_json(sender, bot)
    if data.get("entities") is not None:
        data["entities"] = MessageEntity.de_list(data["entities"], bot)
    if data.get("contact") is not None:
        data["contact"] = Contact.de_json(data["contact"], bot)
    parsed = Message._de_json(data, bot)  # Message.de_json's last step
    return Update._de_json({"update_id": raw["update_id"], "message": parsed}, bot)


class Polling:
    """``start()`` after the application has started; ``stop(grace)`` before it stops."""

    def __init__(
        self,
        application: AnyApplication,
        *,
        allowed_updates: Sequence[str],
        in_flight: InFlight,
        inbox: UpdateInbox,
    ) -> None:
        self.application = application
        self.allowed_updates = list(allowed_updates)
        self.in_flight = in_flight
        self.inbox = inbox
        #: Every update below it is in the inbox (or was handled): the next getUpdates'.
        self.offset = 0
        #: Handled since the inbox was last written: to remove with the next write.
        self._handled: list[int] = []
        #: Taken and not handled (a cancelled one stays: it is handled on the next start).
        self._unfinished: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        # As PTB's Updater does: a webhook left set would answer getUpdates with 409.
        await self.application.bot.delete_webhook(drop_pending_updates=False)
        self._task = asyncio.create_task(self._run(), name="telegram-polling")
        self._flusher = asyncio.create_task(self._flush_now_and_then(), name="telegram-inbox")

    async def stop(self, grace: float) -> None:
        """Stop asking for updates, drop those still waiting for their turn, give those
        under way ``grace`` seconds, cancel the rest, and remove what was handled from the
        inbox: only the unfinished ones are handled on the next start."""
        self._stopping = True
        # The request layer may turn the cancellation of a long poll into a NetworkError,
        # which the loop would retry: the flag ends it then, and cancel_all never waits long.
        await cancel_all([task for task in (self._flusher, self._task) if task is not None])
        await self.in_flight.drain(grace, drop_waiting=True)
        await self._flush()
        if self.offset > 0:  # else Telegram sends the last batch again; the guard drops it
            try:
                await self.application.bot.get_updates(
                    offset=self.offset, limit=1, timeout=0, allowed_updates=self.allowed_updates
                )
            except TelegramError as exc:
                log.warning("telegram_confirm_failed", error=type(exc).__name__)
        log.info("telegram_polling_stopped", unfinished=len(self._unfinished))

    async def _run(self) -> None:
        await self._replay()
        await self._poll()

    async def _replay(self) -> None:
        """Handle, in order, what the inbox kept from the last run."""
        failures = 0
        while True:
            try:
                pending = await self.inbox.pending()
                break
            except (RedisError, OSError) as exc:
                wait = _backoff(failures)
                failures += 1
                log.warning("telegram_inbox_read_failed", error=type(exc).__name__, retry_in=wait)
                await asyncio.sleep(wait)
        bot = self.application.bot
        for update_id in sorted(pending):
            try:
                update = parse_update(json.loads(pending[update_id]), bot)
            except Exception as exc:  # kept by another version, say: it cannot be handled
                error = type(exc).__name__
                log.error("telegram_inbox_unreadable", update_id=update_id, error=error)
                self._handled.append(update_id)
                continue
            self.offset = max(self.offset, update_id + 1)
            self._begin(update)
        log.info("telegram_inbox_replayed", updates=len(pending))

    async def _poll(self) -> None:
        failures = 0
        bot = self.application.bot
        asked = {"timeout": POLL_TIMEOUT, "allowed_updates": self.allowed_updates}
        while not self._stopping:
            try:
                # Telegram's JSON, not Bot.get_updates' objects: the inbox keeps it as sent
                # (Update.to_json walked each object again, ~45 µs an update), and each update
                # is parsed once, below. Bot._post is where get_updates ends too.
                raw = await bot._post(
                    "getUpdates", {**asked, "offset": self.offset}, read_timeout=_READ_TIMEOUT
                )
                kept = [found for found in raw if found["update_id"] >= self.offset]
                new = [parse_update(found, bot) for found in kept]
            except Exception as exc:  # a network error, or an answer PTB could not read
                if self._stopping:
                    return
                wait = _backoff(failures)
                failures += 1
                level = log.warning if isinstance(exc, TelegramError) else log.error
                level("telegram_poll_failed", error=type(exc).__name__, retry_in=wait)
                await asyncio.sleep(wait)
                continue
            failures = 0
            if self._stopping:  # a batch that came back as the stop began: not confirmed
                return
            if not new:
                continue
            await self._keep({found["update_id"]: json.dumps(found) for found in kept})
            self.offset = max(update.update_id for update in new) + 1
            for update in new:
                self._begin(update)

    async def _keep(self, keep: dict[int, str]) -> None:
        """Write ``keep`` (update id -> JSON) to the inbox (with the removals due), until
        Redis takes them."""
        failures = 0
        while True:
            removals, self._handled = self._handled, []
            try:
                await self.inbox.write(keep, remove=removals)
                return
            except asyncio.CancelledError:
                self._handled[:0] = removals
                raise
            except (RedisError, OSError) as exc:
                self._handled[:0] = removals
                wait = _backoff(failures)
                failures += 1
                log.warning("telegram_inbox_write_failed", error=type(exc).__name__, retry_in=wait)
                await asyncio.sleep(wait)

    async def _flush(self) -> None:
        """Remove what was handled from the inbox; if Redis fails, it stays for later (and
        at worst comes back on the next start, where the guard drops it)."""
        if not self._handled:
            return
        removals, self._handled = self._handled, []
        try:
            await self.inbox.write({}, remove=removals)
        except asyncio.CancelledError:
            self._handled[:0] = removals
            raise
        except (RedisError, OSError) as exc:
            self._handled[:0] = removals
            log.warning("telegram_inbox_flush_failed", error=type(exc).__name__)

    async def _flush_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self._flush()

    def _begin(self, update: Update) -> None:
        application = self.application
        update_id = update.update_id
        task = asyncio.create_task(
            application.update_processor.process_update(update, application.process_update(update)),
            name=f"telegram-update-{update_id}",
        )
        self.in_flight.watch(task)
        self._unfinished.add(update_id)

        def handled(done: asyncio.Task[None]) -> None:
            if done.cancelled():  # it stays in the inbox: handled on the next start
                return
            self._unfinished.discard(update_id)
            self._handled.append(update_id)
            if done.exception() is not None:
                log.error("telegram_update_failed", error=type(done.exception()).__name__)

        task.add_done_callback(handled)
