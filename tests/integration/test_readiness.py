"""``bot.health`` over a real Redis and SQLite: what /readyz says when the database hangs or
fails, or before the platform took the token; and what the directory's failures count."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bot.directory.directory import DirectoryTimeout
from bot.health import Health
from bot.identity import MemberKey
from verifybot.bootstrap import open_app


async def ready(health: Health) -> tuple[int, dict[str, Any]]:
    answer = await health.answer("/readyz")
    assert answer.content_type == "application/json"
    return answer.status, json.loads(answer.body)


async def test_readiness_names_the_platform_until_its_token_is_accepted(
    make_settings: Callable[..., Any],
) -> None:
    async with open_app(make_settings()) as app:
        health = Health(app.store, app.directory)
        try:
            assert await ready(health) == (
                503,
                {
                    "status": "not ready",
                    "down": ["platform"],
                    "checks": {
                        "redis": "ok",
                        "database": "ok",
                        "platform": "token not accepted yet",
                    },
                },
            )
            health.token_accepted("slack")
            assert await ready(health) == (
                200,
                {"status": "ready", "checks": {"redis": "ok", "database": "ok", "slack": "ok"}},
            )
            assert (await health.answer("/nowhere")).status == 404
        finally:
            health.close()


async def test_a_hung_database_is_named_and_pinged_once_until_it_answers(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    pings: list[int] = []

    def hung_ping() -> None:
        pings.append(1)
        release.wait(30)

    async with open_app(make_settings()) as app:
        health = Health(app.store, app.directory, timeout=0.2)
        health.token_accepted("telegram")
        monkeypatch.setattr(app.directory, "ping", hung_ping)
        try:
            for _ in range(3):
                status, body = await ready(health)
                assert (status, body["down"]) == (503, ["database"])
                assert body["checks"]["database"] == "no answer within 0.2 s"
            assert len(pings) == 1  # the probes that came later did not pile up threads
            release.set()
            monkeypatch.setattr(app.directory, "ping", lambda: None)
            for _ in range(50):  # the hung ping returns, then a new one is sent
                status, body = await ready(health)
                if status == 200:
                    break
            assert status == 200
        finally:
            release.set()
            health.close()


async def test_a_failing_database_call_is_counted_by_method(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def labels(name: str) -> float:
        sample = f"verifybot_database_{name}"
        return REGISTRY.get_sample_value(sample, {"operation": "find_verified"}) or 0.0

    errors, calls = labels("errors_total"), labels("seconds_count")

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise DirectoryTimeout("the database did not answer")

    async with open_app(make_settings()) as app:
        key = MemberKey("telegram", "bot1", "7")
        assert await app.engine.verification(key) is None
        monkeypatch.setattr(app.directory, "find_verified", unreachable)
        with pytest.raises(DirectoryTimeout):
            await app.engine.verification(key)
    assert (labels("errors_total") - errors, labels("seconds_count") - calls) == (1, 2)
