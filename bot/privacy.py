"""Keeping phone numbers and codes out of sight."""

import re

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE


def mask_phone(e164: str) -> str:
    """Show the country calling code and the last four digits only: ``+44•••••0123``.

    Calling codes are prefix-free (ITU E.164), so the first 1-3 digits that name one are it.
    A dictionary lookup instead of ``phonenumbers.parse``: an export masks every member's
    number, and parsing cost 37 µs each, a third of the export's time.
    """
    digits = e164.removeprefix("+")
    code = next(
        (
            digits[:size]
            for size in (1, 2, 3)
            if digits[:size].isdigit() and int(digits[:size]) in COUNTRY_CODE_TO_REGION_CODE
        ),
        "",
    )
    return f"+{code}•••••{e164[-4:]}"


# Text that may hold a number or a code: a phone number, E.164 or loosely written
# ("+1 415 500 3100", "(415) 555-2671", "00 44 7700 900123"), or a bare digit run (a code).
# Some digit shapes are kept whole because log lines need them and no member types them
# as such: dates, IPv4 addresses, times (digits joined by ':'), decimals (short ones,
# fractions of one and unix times such as a Slack ts), UUIDs (Vonage
# request ids), a port after a host name or "port=", traceback line numbers and Telegram
# supergroup ids. The regex finds the leftmost shape; among shapes starting at the same
# place the first alternative wins, so the "keep" shapes come first. Every alternative
# starts at a digit, '+', '(' or '-', and the leading lookahead lets the scan skip all other
# characters cheaply: this runs on every log record.
_DIGIT_SHAPES = re.compile(
    r"""
    (?=[\d+(\-])
    (?:
      (?P<keep>
          (?<![\w.])
          (?: (?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?![\d-])  # a date
            | \d{1,2}[\ /][A-Z][a-z]{2}[\ /]\d{4}(?!\d)
            | (?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)  # IPv4, and a port
              (?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?::\d{1,5})?(?![\w.])
            | \d{1,4}(?::\d\d)+(?![\w:])
            | (?:0\.\d+|[1-9]\d{0,2}\.\d{1,3}|\d{10}\.\d{1,6})(?![\w.])  # not 74.00654
            | \d[0-9a-fA-F]{7}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?!\w)
          )
        | (?<=:\d\d\ )[+\-]\d{4}(?!\d)  # a time zone after a time
        | (?<=port=)\d{1,5}(?!\w)
        | (?<=line\ )\d+(?!\w)
        | (?<![\w+])-100\d{9,10}(?!\w)
      )
    | (?P<port>(?<=[A-Za-z\]]:)\d{1,5}(?![\w.]|[\ \-/)]\(?\d))  # not "tel:010 00 000\"
    | (?P<digits>
          (?<![\w.+•])
          (?<![0-9a-fA-F]{4}-)  # the inner groups of a UUID that starts with a letter
          \+?\(?\d+(?:(?:[\ .\-/]|\)\ ?)\(?\d+)*(?!\w)
      )
    )
    """,
    re.VERBOSE,
)
_NON_DIGITS = re.compile(r"\D")
_HOST_BEFORE = re.compile(r"(?:localhost|[\w-]\.[A-Za-z][\w-]*|\])\Z")
MASK = "•••"


def _mask_digits(match: re.Match[str]) -> str:
    text = match.group(0)
    if match.lastgroup == "keep":
        return text
    if match.lastgroup == "port" and _HOST_BEFORE.search(
        match.string, max(0, match.start() - 100), match.start() - 1
    ):
        return text  # after "host:"; after "code:" it is a digit run like any other
    body = text.lstrip("+(")
    digits = body if body.isdigit() else _NON_DIGITS.sub("", body)
    international = text[0] == "+" or digits.startswith("00")
    if international and len(digits) >= 7:
        return mask_phone("+" + digits.removeprefix("00"))
    if len(digits) >= 11 and digits[0] != "0":  # longer than a code: a number without "+"
        return mask_phone("+" + digits)
    if len(digits) >= 6 or (len(digits) >= 4 and digits is body):  # 6 grouped, 4 in a row
        return MASK  # a code, or a number written without its country code
    return text


def redact(text: str) -> str:
    """``text`` with every phone-number-shaped and code-shaped digit run masked.

    Used on every log record (``bot.logs``): a number keeps its country code and last four
    digits, as ``mask_phone`` shows it; a code (a bare run of 4 or more digits, or 6 or more
    digits in groups) becomes ``•••``. So do other numbers of that size (ids, pids, byte
    counts) in free text: a log line may lose one, never show a member's code.
    """
    return _DIGIT_SHAPES.sub(_mask_digits, text)
