"""The privacy tests' two tools: every logger forced to DEBUG, and a scan of output for
phone numbers (in the forms a member or a library writes them) and codes."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import phonenumbers

# What a subprocess runs instead of ``python -m verifybot``: the same CLI, every logger at DEBUG
# whatever the code asks for (``LOG_LEVEL=DEBUG`` plus the quieted libraries turned back up).
LOUD_VERIFYBOT = (
    "import tests.log_scan as s; s.every_logger_at_debug(); from verifybot.cli import main; main()"
)


_set_level = logging.Logger.setLevel


def _loggers() -> list[logging.Logger]:
    known = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(x for x in known if isinstance(x, logging.Logger))]


def _at_debug(self: logging.Logger, level: Any) -> None:
    _set_level(self, logging.DEBUG)


def every_logger_at_debug() -> None:
    """From now on, ``setLevel`` on any logger sets DEBUG: the worst case the redactor meets."""
    logging.Logger.setLevel = _at_debug  # type: ignore[method-assign]
    for logger in _loggers():
        _set_level(logger, logging.DEBUG)


@contextmanager
def loud() -> Iterator[None]:
    """``every_logger_at_debug`` for one test in this process; levels restored after."""
    levels = {logger: logger.level for logger in _loggers()}
    every_logger_at_debug()
    try:
        yield
    finally:
        logging.Logger.setLevel = _set_level  # type: ignore[method-assign]
        for logger in _loggers():
            _set_level(logger, levels.get(logger, logging.NOTSET))


def _loose(digits: str) -> str:
    """``digits`` written any way: spaces, dots, dashes or brackets between them."""
    return r"[\s().\-/]{0,2}".join(digits)


def number_patterns(e164: str) -> list[re.Pattern[str]]:
    """E.164, without its '+', and the national number, each loosely written."""
    national = str(phonenumbers.parse(e164).national_number)
    trunk = r"(?:0[\s().\-]{0,2})?"  # the national prefix, as in 07400 123456
    forms = (_loose(e164.removeprefix("+")), trunk + _loose(national))
    return [re.compile(rf"(?<!\d){form}(?!\d)") for form in forms]


def code_pattern(code: str) -> re.Pattern[str]:
    # Not after a '.': the microseconds of a Slack ts ("1796305477.983481") are six random
    # digits, and a test must not fail by chance.
    spaced = r"[ \-]?".join(code)
    return re.compile(rf"(?<![\d.]){spaced}(?!\d)")


_TIMESTAMP = re.compile(r'"timestamp": "[^"]*"|^\S*\d{4}-\d\d-\d\dT[\d:.]+Z?')


def leaks(lines: Iterable[str], numbers: Iterable[str], codes: Iterable[str]) -> list[str]:
    """Every line that shows one of ``numbers`` (E.164) or ``codes``, with what it shows.

    The timestamp is left out of the scan (its microseconds are six random digits)."""
    patterns = [(n, p) for n in numbers for p in number_patterns(n)]
    patterns += [(c, code_pattern(c)) for c in codes]
    found = []
    for line in lines:
        scanned = _TIMESTAMP.sub("", line)
        found += [f"{secret}: {line}" for secret, p in patterns if p.search(scanned)]
    return found
