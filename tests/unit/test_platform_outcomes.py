"""How each platform's answers are labelled in ``verifybot_platform_calls_total{outcome}``."""

from __future__ import annotations

import pytest

from adapters.slack.client import outcome_of as slack_outcome
from adapters.telegram.http import outcome_of as telegram_outcome


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (400, "bad_request"), (403, "forbidden"), (429, "429"), (404, "error"),
     (502, "error")],
)  # fmt: skip
def test_a_bot_api_status_is_an_outcome(status: int, outcome: str) -> None:
    assert telegram_outcome(status) == outcome


@pytest.mark.parametrize(
    ("error", "status", "outcome"),
    [
        ("ratelimited", 429, "429"),
        ("ratelimited", 200, "429"),
        ("missing_scope", 200, "forbidden"),
        ("not_in_channel", 200, "forbidden"),
        ("invalid_auth", 200, "forbidden"),
        ("invalid_arguments", 200, "bad_request"),
        (None, 500, "error"),
    ],
)
def test_a_web_api_error_is_an_outcome(error: str | None, status: int, outcome: str) -> None:
    assert slack_outcome(error, status) == outcome
