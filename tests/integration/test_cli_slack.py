"""``verifybot run slack`` refuses to start, in one clear line, without what Slack needs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.slack import check_settings
from bot.settings import ConfigError
from tests.conftest import unconfigured_environment


def test_run_slack_without_a_bot_token_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "verifybot", "run", "slack"],
        env=unconfigured_environment(), cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SLACK_BOT_TOKEN" in lines[0], result.stderr


@pytest.mark.parametrize(
    ("values", "socket", "names"),
    [
        ({"slack_bot_token": "xoxb-1"}, False, "SLACK_SIGNING_SECRET"),
        ({"slack_bot_token": "xoxb-1"}, True, "SLACK_APP_TOKEN"),
        ({"slack_bot_token": "xoxb-1", "slack_app_token": "xoxb-2"}, True, "xapp-"),
    ],
)
def test_each_mode_names_what_it_misses(
    make_settings: Callable[..., Any], values: dict[str, str], socket: bool, names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        check_settings(make_settings(**values), socket=socket)


def test_complete_settings_pass(make_settings: Callable[..., Any]) -> None:
    check_settings(make_settings(slack_bot_token="xoxb-1", slack_signing_secret="s"), socket=False)
    check_settings(make_settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1"), socket=True)
