"""The console chat, driven as a newcomer would: ``python -m verifybot console`` in a terminal,
typing on stdin, reading the bot on stdout and the sandbox's "SMS" on stderr.

Every run also scans the JSON log lines for the code and the full phone number.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TextIO

import pytest

from adapters.console import ConsoleChat
from bot.settings import Settings
from tests.conftest import unconfigured_environment
from verifybot.bootstrap import open_app

FICTIONAL = "+44 7700 900123"  # the README's example: accepted by the sandbox only
E164_DIGITS = "447700900123"
CODE_LINE = re.compile(r"\[sandbox\] code for \+44•••••0123: (\d+)")


class Console:
    def __init__(
        self, env: dict[str, str], cwd: Path, command: Sequence[str] = ("-m", "verifybot")
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *command, "console", "--user", "newcomer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=cwd,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        for stream, sink, lines in (
            (self.process.stdout, self.out, self.stdout_lines),
            (self.process.stderr, self.err, self.stderr_lines),
        ):
            threading.Thread(target=self._pump, args=(stream, sink, lines), daemon=True).start()

    @staticmethod
    def _pump(stream: IO[str] | None, sink: queue.Queue[str], lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line.rstrip("\n"))
            sink.put(line.rstrip("\n"))

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def expect(self, pattern: str, *, stream: str = "out", timeout: float = 15) -> re.Match[str]:
        source = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = source.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no {pattern!r} on {stream} in {timeout}s; saw: {seen}")

    def code(self) -> str:
        return self.expect(CODE_LINE.pattern, stream="err").group(1)

    def close(self) -> int:
        if self.process.poll() is None:
            self.send("/quit")
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


clean_environment = unconfigured_environment


@pytest.fixture
def console_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    env = clean_environment()
    env.update(
        REDIS_URL=redis_url,
        REDIS_PREFIX=key_prefix,
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
    )
    return env


@pytest.fixture
def console(console_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    opened: list[Console] = []

    def open_console(**settings: str) -> Console:
        chat = Console({**console_env, **settings}, tmp_path)
        opened.append(chat)
        chat.expect("send me your mobile phone number")
        return chat

    yield open_console
    for chat in opened:
        assert chat.close() == 0, chat.stderr_lines
        assert_private(chat)


def assert_private(chat: Console) -> None:
    """No log line carries a code or the full phone number."""
    codes = {m.group(1) for line in chat.stderr_lines if (m := CODE_LINE.search(line))}
    log_lines = [line for line in chat.stderr_lines if line.startswith("{")]
    assert log_lines, chat.stderr_lines
    for line in log_lines:
        json.loads(line)
        assert E164_DIGITS not in line.replace(" ", "")
        assert "7700 900123" not in line
        for code in codes:
            assert code not in line, line


def test_a_newcomer_verifies_with_no_configuration_at_all(tmp_path: Path) -> None:
    env = clean_environment()
    env["LOG_FORMAT"] = "json"
    chat = Console(env, tmp_path)
    try:
        chat.expect("send me your mobile phone number")
        chat.send(FICTIONAL)
        chat.expect(r"I've sent a 6-digit code to \+44•••••0123")
        chat.expect("Never share it with anyone")
        chat.send(chat.code())
        chat.expect(r"You're verified with \+44•••••0123")
    finally:
        assert chat.close() == 0
    assert (tmp_path / "verifybot.db").exists()  # DATABASE_URL's default
    assert (tmp_path / ".verifybot").is_dir()  # the embedded Redis lives here
    assert any("embedded_redis" in line for line in chat.stderr_lines)
    assert_private(chat)


def test_a_wrong_code_then_the_right_one(console: Any) -> None:
    chat = console()
    chat.send(FICTIONAL)
    code = chat.code()
    chat.send("999999" if code != "999999" else "888888")
    chat.expect("That code isn't right. You have 2 tries left.")
    chat.send(" ".join(code[:3]) + " " + code[3:])  # spaces are allowed
    chat.expect("You're verified")


class _Screen(io.StringIO):
    """The console's stdout, read while the chat runs (both on the event loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        self.changed.set()
        return super().write(text)

    async def expect(self, text: str) -> None:
        async with asyncio.timeout(15):
            while text not in self.getvalue():
                self.changed.clear()
                await self.changed.wait()


def _pipe() -> tuple[TextIO, TextIO]:
    """A stdin for the console, and the end the test types into."""
    read_end, write_end = os.pipe()
    return open(read_end, encoding="utf-8"), open(write_end, "w", encoding="utf-8")


async def test_an_expired_code(make_settings: Callable[..., Settings]) -> None:
    # In process, so that the engine's clock moves on instead of the test sleeping.
    now = [time.time()]
    codes: list[str] = []
    settings = make_settings(code_validity_seconds=1)
    async with open_app(settings, show_code=codes.append, clock=lambda: now[0]) as app:
        stdin, typing_ = _pipe()
        with stdin:
            with typing_:
                screen = _Screen()
                chat = ConsoleChat(
                    app.engine, app.catalogue, user_id="x", stdin=stdin, stdout=screen
                )
                running = asyncio.create_task(chat.run())
                await screen.expect("send me your mobile phone number")
                typing_.write(FICTIONAL + "\n")
                typing_.flush()
                await screen.expect("I've sent a 6-digit code")
                match = CODE_LINE.search(codes[-1])
                assert match
                now[0] += 1.0  # valid for one second, not a moment more
                typing_.write(match.group(1) + "\n")
                typing_.flush()
                await screen.expect("Your code has expired")
            await running  # the end of what the member typed ends the chat


def test_a_resend(console: Any) -> None:
    chat = console(RESEND_COOLDOWN_SECONDS="0")
    chat.send(FICTIONAL)
    first = chat.code()
    chat.expect(r"\(/resend Resend code\)")
    chat.send("/resend")
    chat.expect("I've sent the code to .* again")
    assert chat.code() == first
    chat.send(first)
    chat.expect("You're verified")


def test_a_rate_limit_says_when_to_try_again(console: Any) -> None:
    chat = console(LIMIT_STARTS_PER_MEMBER="1/1h")
    chat.send(FICTIONAL)
    chat.code()
    chat.send("/change")
    chat.expect("send me your mobile phone number")
    chat.send("+44 7700 900456")
    chat.expect(r"Too many codes have been requested\. Please try again in 60 min\.")


def test_replies_follow_the_members_language(console_env: dict[str, str], tmp_path: Path) -> None:
    chat = Console({**console_env, "DEFAULT_LANGUAGE": "es"}, tmp_path)
    try:
        chat.expect("envíame tu número de móvil")
        chat.send("hola")
        chat.expect("Eso no parece un número de teléfono")
    finally:
        assert chat.close() == 0


def test_bad_configuration_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    env = {**clean_environment(), "ALLOWED_COUNTRIES": "GB,Narnia"}
    result = subprocess.run(
        [sys.executable, "-m", "verifybot", "console"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "verifybot: bad configuration: ALLOWED_COUNTRIES: unknown country code(s) NARNIA "
        "(use ISO codes: GB, US)"
    ]
