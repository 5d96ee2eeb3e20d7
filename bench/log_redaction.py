"""CPU cost of redacting log records (``bot.logs.redact_event``), which runs on every record.

What it measures
    Per record, in CPU time (``time.process_time``), median of 5 rounds:

    a. one of our structlog events (``verify_started`` with a masked phone, a request id,
       a member key) logged through ``configure_logging("INFO", "json")`` to an in-memory
       stream, with the redactor in the chain and with it taken out: the difference is what
       redaction adds to a whole ``log.info`` call;
    b. the same for a foreign record the size of PTB's ``Processing update Update(...)``
       line (~1.6 kB of repr with ids, a date and a typed number), which is the worst
       realistic case (it only appears if someone turns PTB back up to DEBUG);
    c. a DEBUG call below the INFO level, which must cost next to nothing (no processor
       runs: ``filter_by_level`` stops it first, and stdlib loggers never make the record).

        .venv/bin/python bench/log_redaction.py
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from collections.abc import Callable

import structlog

from bot import logs

UPDATE = (
    "Update(message=Message(channel_chat_created=False, chat=Chat(first_name='Ada', "
    "id=700000001, type=<ChatType.PRIVATE>), date=datetime.datetime(2026, 12, 3, 13, 30, 56, "
    "tzinfo=datetime.timezone.utc), delete_chat_photo=False, from_user=User(first_name='Ada', "
    "id=700000001, is_bot=False, language_code='en'), group_chat_created=False, message_id=3, "
    "supergroup_chat_created=False, text='+44 7400 654321'), update_id=10003)"
) * 4


def per_call(action: Callable[[], None], rounds: int = 5, calls: int = 4000) -> float:
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            action()
        samples.append((time.process_time() - start) / calls)
    return statistics.median(samples)


def configured(redacting: bool) -> io.StringIO:
    stream = io.StringIO()
    logs.configure_logging("INFO", "json", stream=stream)
    if not redacting:
        formatter = logging.getLogger().handlers[0].formatter
        assert isinstance(formatter, structlog.stdlib.ProcessorFormatter)
        formatter.processors = [p for p in formatter.processors if p is not logs.redact_event]
        # Our own events are rendered by structlog's chain, not by the handler's formatter.
        chain = structlog.get_config()["processors"]
        structlog.configure(processors=[p for p in chain if p is not logs.redact_event])
    return stream


def main() -> None:
    ours = structlog.get_logger("verifybot.vonage")
    foreign = logging.getLogger("telegram.ext.Application")

    def our_event() -> None:
        ours.info(
            "verify_started",
            phone="+44•••••4321",
            request_id="2f401582-b3ae-4bd4-a69d-b6bfa60bc4cf",
            member="telegram:123456:700000001",
        )

    def foreign_record() -> None:
        foreign.warning("Processing update %s", UPDATE)

    def filtered_out() -> None:
        ours.debug("conversation_moved", member="telegram:123456:700000001", state_to="idle")

    print(f"{'case':<48}{'without':>10}{'with':>10}{'added':>10}")
    for name, action in (
        ("(a) our event, INFO, JSON", our_event),
        (f"(b) foreign record, {len(UPDATE)} chars", foreign_record),
        ("(c) DEBUG call below INFO", filtered_out),
    ):
        figures = []
        for redacting in (False, True):
            stream = configured(redacting)
            figures.append(per_call(action))
            stream.truncate(0)
        without, with_ = figures
        print(
            f"{name:<48}{without * 1e6:>8.1f}us{with_ * 1e6:>8.1f}us"
            f"{(with_ - without) * 1e6:>8.1f}us"
        )
    structlog.reset_defaults()


if __name__ == "__main__":
    main()
