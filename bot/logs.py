"""Structured logs (structlog), readable in a terminal or as JSON lines.

No log line shows a full phone number or a code, whatever logger wrote it:

- Third-party loggers that print payloads (updates, request bodies, query strings) are held
  at WARNING or above (``QUIET_LOGGERS``), whatever ``LOG_LEVEL`` says.
- Every record that reaches the handler, ours or a library's, goes through ``redact_event``
  last, after its message has been formatted with its %-args and its exception rendered:
  number- and code-shaped text is masked there (``bot.privacy.redact``). So a logger left at
  DEBUG by mistake still leaks nothing.
- A crash that nothing catches (in the main thread or another) is logged, so redacted too.

Our own events do not pass through the standard library's records: structlog runs the same
processors (redaction last before rendering) and hands the finished line to the root
handler's stream (``_Lines``). A ``LogRecord``, its copy in ``ProcessorFormatter``, and the
caller lookup cost two thirds of a line (bench/README.md); the standard library's levels
still decide what is written.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from contextlib import nullcontext
from types import TracebackType
from typing import Any, Literal, TextIO

from bot._optional import without

# Nothing here uses rich (format_exc_info turns a traceback into text before the renderer) or
# greenlet (structlog's deprecated threadlocal module).
with without("rich", "greenlet"):
    import structlog

from bot.privacy import redact

# Loggers that print members' data at DEBUG or INFO, and the lowest level they may log at.
QUIET_LOGGERS: Mapping[str, int] = {
    "telegram": logging.WARNING,  # PTB: whole updates (getUpdates, "Processing update", webhook)
    "httpx": logging.WARNING,  # request URLs
    "httpcore": logging.WARNING,
    "urllib3": logging.WARNING,
    "slack_sdk": logging.WARNING,  # API bodies and Socket Mode envelopes
    "slack_bolt": logging.WARNING,  # request bodies
    "aiohttp.access": logging.WARNING,  # request lines with query strings (OAuth codes)
    "sqlalchemy": logging.WARNING,  # engine: statements, their parameters and result rows
    "alembic": logging.WARNING,
    "asyncio": logging.WARNING,
    # The Vonage SDK logs request bodies (the phone and the code) at DEBUG and whole error
    # bodies at WARNING; the verifiers log every outcome themselves, masked.
    "vonage": logging.ERROR,
    "vonage_verify": logging.ERROR,
    "vonage_http_client": logging.ERROR,
}

# Keys whose values are identifiers the platforms or this code assign (a Telegram user id
# is a bare digit run): exempt from the code-shaped rule, still checked for phone numbers.
_ID_KEYS = frozenset(
    {"member", "user", "actor", "delivery_id", "request_id", "update_id", "port", "status",
     "attempt", "wait", "pid"}
)  # fmt: skip
# Added by our own processors; a timestamp is never a member's data.
_TRUSTED_KEYS = frozenset({"timestamp", "level", "logger"})


def quiet_third_party_loggers(floor: int = logging.NOTSET, *, prefix: str = "") -> None:
    """Hold each of ``QUIET_LOGGERS`` (those whose name starts with ``prefix``) at its
    level, or at ``floor`` if that is higher."""
    for name, level in QUIET_LOGGERS.items():
        if name.startswith(prefix):
            logging.getLogger(name).setLevel(max(level, floor))


def _redact_value(value: Any, *, identifier: bool = False) -> Any:
    if isinstance(value, str):
        return _redact_id(value) if identifier else redact(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        text = str(value)
        masked = _redact_id(text) if identifier else redact(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {_redact_value(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return redact(repr(value))  # what the renderers would print for it, masked


def _redact_id(text: str) -> str:
    # Only the phone rule: a digit run that long and bare is a number, not an id.
    masked = redact(text)
    return text if "+" not in masked else masked


def redact_event(
    _logger: Any, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Mask number- and code-shaped text in every value of a record about to be rendered."""
    return {
        key: value if key in _TRUSTED_KEYS else _redact_value(value, identifier=key in _ID_KEYS)
        for key, value in event_dict.items()
    }


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("verifybot").critical("uncaught_exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(crash: threading.ExceptHookArgs) -> None:
    if crash.exc_value is not None:
        _log_uncaught(crash.exc_type, crash.exc_value, crash.exc_traceback)


class _Lines:
    """The logger structlog hands a rendered line to: the standard logger of the same name
    says which levels are on, the root handler's stream takes the line (under its lock)."""

    __slots__ = ("_handler", "_logger")

    def __init__(self, logger: logging.Logger, handler: logging.StreamHandler[TextIO]) -> None:
        self._logger = logger
        self._handler = handler

    @property
    def name(self) -> str:
        return self._logger.name

    @property
    def disabled(self) -> bool:  # read by structlog's filter_by_level
        return self._logger.disabled

    def getEffectiveLevel(self) -> int:  # logging.Logger's names: structlog calls them
        return self._logger.getEffectiveLevel()

    def isEnabledFor(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def write(self, line: str) -> None:
        handler = self._handler
        with handler.lock or nullcontext():
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            except Exception:  # as StreamHandler.emit: a log line never crashes the bot
                handler.handleError(logging.makeLogRecord({"msg": line}))

    debug = info = warning = warn = error = exception = critical = fatal = msg = write


def configure_logging(
    level: str = "INFO", fmt: Literal["console", "json"] = "console", stream: TextIO | None = None
) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    rendering: list[structlog.types.Processor] = [
        structlog.processors.format_exc_info,
        redact_event,  # last before rendering: the message, args and traceback are text
        renderer,
    ]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    lines: dict[str | None, _Lines] = {}

    def lines_for(*name: str) -> _Lines:
        key = name[0] if name else None
        found = lines.get(key)
        if found is None:
            found = lines[key] = _Lines(logging.getLogger(key), handler)
        return found

    # A crash's traceback (an SDK's validation error quotes its input) goes through the
    # redactor too, instead of straight to stderr.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_third_party_loggers(floor=root.level)
    structlog.configure(
        processors=[
            # Records below the level stop here, before any processor (or redaction) runs.
            structlog.stdlib.filter_by_level,
            *shared,
            *rendering,
        ],
        logger_factory=lines_for,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
