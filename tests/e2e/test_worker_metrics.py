"""Several workers, scraped one by one: each ``verifybot run telegram --webhook`` process
serves its own /metrics on its own port, counting what it handled itself, and the sum over
the workers is the deployment's total (what Prometheus's ``sum()`` over instances gives).
Two real processes behind the round robin of ``test_two_workers``."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_metrics import Samples, parse
from tests.e2e.test_telegram import next_message
from tests.e2e.test_two_workers import Deployment, deployment, phone_of  # noqa: F401 - fixture
from tests.integration.conftest import database_url, postgres_admin  # noqa: F401 - fixtures

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

MEMBERS = 4


async def scrape(worker_url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{worker_url}/metrics")
    assert response.status_code == 200
    return parse(response.text)


async def test_each_worker_serves_its_own_counts_and_they_add_up(
    deployment: Deployment,  # noqa: F811 - the fixture imported above
) -> None:
    telegram, vonage = deployment.telegram, deployment.vonage
    before = [await scrape(url) for url in deployment.balancer.workers]
    for index in range(MEMBERS):
        member = telegram.add_user(f"Member {index}", language_code="en")
        typed, e164 = phone_of(index)
        telegram.send_text(member, "/start")
        await next_message(telegram, member, "phone number")
        telegram.send_text(member, typed)
        await next_message(telegram, member, "I've sent a 6-digit code")
        telegram.send_text(member, vonage.last_code(e164))
        await next_message(telegram, member, "You're verified")
    after = [await scrape(url) for url in deployment.balancer.workers]

    verified = ("verifybot_members_verified_total", frozenset({("platform", "telegram")}))
    sent = (
        "verifybot_codes_sent_total",
        frozenset({("platform", "telegram"), ("channel", "sms"), ("country", "GB")}),
    )
    for key in (verified, sent):
        each = [a.get(key, 0.0) - b.get(key, 0.0) for a, b in zip(after, before, strict=True)]
        # The round robin alternates a member's updates, so both workers did some of it.
        assert all(count > 0 for count in each), (key, each)
        assert sum(each) == MEMBERS, (key, each)
