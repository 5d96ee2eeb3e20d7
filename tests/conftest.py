"""Shared fixtures: a real Redis (REDIS_URL, or a private server), a fresh key prefix per
test that is cleaned up afterwards, and settings that ignore the developer's own .env."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bot.settings import Settings
from bot.store import Store
from verifybot.embedded_redis import EmbeddedRedis


def unconfigured_environment(**values: str) -> dict[str, str]:
    """This machine's environment with no verifybot setting in it, plus ``values``: what a
    newcomer's shell looks like to a ``verifybot`` subprocess."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    return {**env, "PYTHONUNBUFFERED": "1", **values}


class Inbox:
    """What the sandbox verifier 'texts': the operator-side lines, with the code at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def last_code(self) -> str:
        match = re.search(r"(\d+)$", self.lines[-1])
        assert match, self.lines
        return match.group(1)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server.url


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """This test's own key prefix; afterwards its keys, and only its keys, are deleted."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    with SyncRedis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
async def redis(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def store(redis: Redis, key_prefix: str) -> Store:
    return Store(redis, prefix=key_prefix)


@pytest.fixture
def make_settings(tmp_path: Path, redis_url: str, key_prefix: str) -> Any:
    """Settings for a test: no .env, a temporary SQLite file, this test's Redis prefix."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "_env_file": None,
            "redis_url": redis_url,
            "redis_prefix": key_prefix,
            "database_url": f"sqlite:///{tmp_path / 'verifybot.db'}",
            "data_dir": tmp_path / "data",
        }
        values.update(overrides)
        return Settings(**values)

    return make


# --- Vonage: a key pair and the TLS emulator, for tests that talk to "Vonage" -------------

VONAGE_APP_ID = "a1b2c3d4-0000-4000-8000-0123456789ab"
VONAGE_API_KEY = "abcd1234"
VONAGE_API_SECRET = "s3cr3t-legacy"


@pytest.fixture(scope="session")
def vonage_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(vonage_key: Any, tmp_path: Path) -> Path:
    """The application's private key as the operator downloads it (PKCS#8 PEM, a file)."""
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "private.key"
    path.write_bytes(
        vonage_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def vonage(vonage_key: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from cryptography.hazmat.primitives import serialization

    from tests.emulators.vonage import VonageEmulator

    public = vonage_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with VonageEmulator(
        application_id=VONAGE_APP_ID,
        public_key_pem=public,
        api_key=VONAGE_API_KEY,
        api_secret=VONAGE_API_SECRET,
    ) as emulator:
        # The SDK always speaks HTTPS; requests trusts the emulator's test CA through this.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_bundle)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield emulator
    assert emulator.internal_errors == []
