"""Every log record is redacted before it is written, whatever logger wrote it: numbers keep
their country code and last four digits, codes vanish, and the shapes operators need
(timestamps, ports, addresses, request ids, durations) survive."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from bot.logs import QUIET_LOGGERS, configure_logging
from bot.privacy import redact
from tests.log_scan import leaks


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("'text': '+1 415 500 3100'", "'text': '+1•••••3100'"),
        ("+447400123456", "+44•••••3456"),
        ('"phone_number": "447400123456"', '"phone_number": "+44•••••3456"'),
        ("00 44 7700 900123", "+44•••••0123"),
        ("(415) 555-2671", "•••"),
        ("415.555.2671", "•••"),
        ("07400 123456", "•••"),
        ("text='983758'", "text='•••'"),
        ('{"text": "868609"}', '{"text": "•••"}'),
        ("code 983 758", "code •••"),
        ("check?code=1234&x=1", "check?code=•••&x=1"),
        ("update_id=123456789", "update_id=•••"),
        ("code 983758: accepted", "code •••: accepted"),
        ("code:1234 and 983758:12", "code:••• and •••:12"),
    ],
)
def test_numbers_and_codes_are_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-03T13:13:13.123456Z",
        "[03/Dec/2026:13:13:13 +0000]",
        "Date: Thu, 03 Dec 2026 13:30:56 GMT",
        "connect_tcp host='127.0.0.1' port=8443",
        "listening on 127.0.0.1:8443",
        "http://localhost:8443/telegram",
        "https://api.nexmo.com:443/v2/verify",
        "[::1]:8443",
        "request c11236f4-0012-4b89-1234-884235197315 done",
        "request 12345678-abcd-4b89-1234-884235197315 done",
        "took 1234.5 ms, ts 1700000000.000100",
        "HTTP/1.1 200, 3 tries, 42 ms, status:200",
        "chat -1001234567890",
        'File "bot/engine.py", line 1234, in handle',
        "user U0ALICE001, key ab12345678cd",
        "+44•••••3456, already masked",
    ],
)
def test_what_operators_need_is_kept(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved
        sys.excepthook, threading.excepthook = hooks
        structlog.reset_defaults()


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_third_party_logger_left_at_debug_is_redacted_too(output: io.StringIO) -> None:
    ptb = logging.getLogger("telegram")
    ptb.setLevel(logging.DEBUG)  # as if someone turned it back up
    try:
        logging.getLogger("telegram.ext.Application").debug(
            "Processing update %s", "Update(message=Message(text='983758'))"
        )
        logging.getLogger("telegram.ext.Updater").debug(
            "Webhook received data: %s", '{"message": {"text": "868609"}}'
        )
        logging.getLogger("telegram.Bot").debug(
            "Call to Bot API endpoint getUpdates finished with return value %r",
            [{"message": {"text": "+1 415 500 3100"}}],
        )
    finally:
        ptb.setLevel(QUIET_LOGGERS["telegram"])
    text = output.getvalue()
    for secret in ("983758", "868609", "415 500 3100", "4155003100"):
        assert secret not in text
    assert "Processing update Update(message=Message(text='•••'))" in text
    assert "+1•••••3100" in text


def test_structured_values_exceptions_and_ids(output: io.StringIO) -> None:
    log = structlog.get_logger("verifybot.test")
    log.info(
        "typed", text="+44 7400 123456", code=983758, port=8443,
        extra={"body": ["868609"], "+14155552671": "by number"},
    )  # fmt: skip
    log.info("member_seen", member="telegram:bot1:123456789", user=123456789)
    try:
        raise ValueError("bad code 983758 for 447400123456")
    except ValueError:
        logging.getLogger("somelib").exception("failed for %s", "+14155552671")
    first, second, third = records(output)
    assert first["text"] == "+44•••••3456"
    assert first["code"] == "•••"
    assert first["extra"] == {"body": ["•••"], "+1•••••2671": "by number"}
    assert first["port"] == 8443
    assert (second["member"], second["user"]) == ("telegram:bot1:123456789", 123456789)
    assert third["event"] == "failed for +1•••••2671"
    exception = str(third["exception"])
    assert "ValueError: bad code ••• for +44•••••3456" in exception
    assert "983758" not in exception


def test_a_record_below_the_level_is_not_processed(output: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.INFO)
    structlog.get_logger("verifybot.test").debug("hidden", code="983758")
    assert output.getvalue() == ""


def test_our_events_follow_the_standard_levels_and_share_the_stream(output: io.StringIO) -> None:
    # structlog writes our lines itself (no LogRecord): the stdlib logger's level still rules.
    quiet = logging.getLogger("verifybot.quiet")
    quiet.setLevel(logging.WARNING)
    try:
        structlog.get_logger("verifybot.quiet").info("hidden", code="983758")
        structlog.get_logger("verifybot.quiet").warning("shown", code="983758")
        logging.getLogger("somelib").warning("foreign")
    finally:
        quiet.setLevel(logging.NOTSET)
    assert [(r["event"], r["logger"], r.get("code")) for r in records(output)] == [
        ("shown", "verifybot.quiet", "•••"),
        ("foreign", "somelib", None),
    ]


def test_payload_printing_loggers_are_quiet_at_debug(output: io.StringIO) -> None:
    for name in ("telegram.ext.Application", "telegram.Bot", "httpx", "slack_sdk.socket_mode",
                 "slack_bolt.AsyncApp", "aiohttp.access", "sqlalchemy.engine.Engine",
                 "vonage_http_client"):  # fmt: skip
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


# --- As a hostile world writes them --------------------------------------------------------

CALLING_CODES = sorted(COUNTRY_CODE_TO_REGION_CODE)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
PLAUSIBLE_DATE = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")
AROUND = st.sampled_from(["", "text='", '"text": "', "phone ", "=", "(", "[", "tel:", "\n"])
AFTER = st.sampled_from(["", "'", '"', ".", ",", ")", " ok", "\n", ":", "-"])


@st.composite
def written_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A number in E.164 and as a member or a library might write it."""
    code = str(draw(st.sampled_from(CALLING_CODES)))
    national = draw(st.from_regex(r"[1-9][0-9]{6,11}", fullmatch=True))
    national = national[: 15 - len(code)]
    sizes = draw(st.lists(st.integers(2, 4), min_size=1, max_size=6))
    groups, rest = [], national
    for size in sizes:
        groups.append(rest[:size])
        rest = rest[size:]
    groups = [g for g in [*groups, rest] if g]
    sep = draw(st.sampled_from([" ", "-", ".", "/", " - "]))
    spaced = sep.join(groups)
    style = draw(st.sampled_from(["e164", "bare", "plus", "00", "trunk", "national", "brackets"]))
    written = {
        "e164": f"+{code}{national}",
        "bare": f"{code}{national}",
        "plus": f"+{code} {spaced}",
        "00": f"00{code} {spaced}",
        "trunk": f"0{spaced}",
        "national": spaced,
        "brackets": f"({national[:3]}) {national[3:6]}-{national[6:]}",
    }[style]
    return f"+{code}{national}", written


@given(number=written_numbers(), before=AROUND, after=AFTER)
@settings(max_examples=400, deadline=None)
def test_no_written_number_survives(number: tuple[str, str], before: str, after: str) -> None:
    e164, written = number
    # Kept whole by design: log lines carry dates and addresses, and no member writes a
    # number as either.
    assume(not PLAUSIBLE_DATE.fullmatch(written) and not IPV4.fullmatch(written))
    assert leaks([redact(before + written + after)], [e164], []) == [], written


@given(
    code=st.from_regex(r"[0-9]{4,10}", fullmatch=True),
    before=AROUND,
    after=AFTER,
    spaced=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_no_code_survives(code: str, before: str, after: str, spaced: bool) -> None:
    written = f"{code[:3]} {code[3:]}" if spaced and len(code) >= 6 else code
    assert leaks([redact(before + written + after)], [], [code]) == [], written


@pytest.mark.parametrize("written", ["1000-00-00", "2026-13-01", "2026-12-32", "2199-01-01"])
def test_a_number_shaped_like_an_impossible_date_is_masked(written: str) -> None:
    assert written not in redact(f"phone {written}")


def test_a_real_date_is_kept() -> None:
    assert redact("expires 2026-12-03T17:51:45") == "expires 2026-12-03T17:51:45"


def test_a_crash_nothing_catches_is_logged_redacted(output: io.StringIO) -> None:
    def crash() -> None:
        raise ValueError("input_value='447400123456', code 983758")

    worker = threading.Thread(target=crash)
    worker.start()
    worker.join()
    try:
        crash()
    except ValueError as error:
        sys.excepthook(type(error), error, error.__traceback__)
    in_thread, in_main = records(output)
    for record in (in_thread, in_main):
        assert record["event"] == "uncaught_exception"
        assert "ValueError: input_value='+44•••••3456', code •••" in str(record["exception"])
