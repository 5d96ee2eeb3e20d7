"""Fixtures shared by the Telegram journeys: the Bot API emulator, and a Vonage key file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.emulators.telegram import TelegramEmulator


@pytest.fixture
def telegram() -> Iterator[TelegramEmulator]:
    with TelegramEmulator() as emulator:
        yield emulator
    assert emulator.internal_errors == []
    assert emulator.unemulated == []


@pytest.fixture
def key_file(vonage_key: Any, tmp_path: Path) -> Path:
    path = tmp_path / "private.key"
    path.write_bytes(
        vonage_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path
