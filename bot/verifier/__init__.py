"""Verifiers: Vonage Verify v2 (default), legacy v1, and a sandbox for local use."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bot.settings import ConfigError, Settings
from bot.verifier._sdk import SigningAuth, VonageOptions
from bot.verifier.base import Verifier
from bot.verifier.keys import PrivateKeyError, load_private_key
from bot.verifier.sandbox import SandboxVerifier
from bot.verifier.vonage_legacy import VonageLegacyVerifier
from bot.verifier.vonage_v2 import VonageVerifier

__all__ = [
    "SandboxVerifier",
    "Verifier",
    "VonageLegacyVerifier",
    "VonageVerifier",
    "build_verifier",
]


def _to_operator(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def signing_auth(settings: Settings) -> SigningAuth:
    if not settings.vonage_application_id:
        raise ConfigError("VONAGE_APPLICATION_ID is not set")
    pem = settings.vonage_private_key.get_secret_value() if settings.vonage_private_key else None
    try:
        key = load_private_key(pem=pem, path=settings.vonage_private_key_path)
    except PrivateKeyError as exc:
        raise ConfigError(str(exc)) from None
    return SigningAuth(settings.vonage_application_id, key)


def build_verifier(
    settings: Settings, *, show_code: Callable[[str], None] = _to_operator
) -> Verifier:
    kind = settings.verifier_kind
    options = VonageOptions(
        brand=settings.vonage_brand_name,
        api_host=settings.vonage_api_host,
        rest_host=settings.vonage_rest_host,
        timeout=settings.vonage_timeout_seconds,
        code_length=settings.code_length,
        max_workers=settings.vonage_max_concurrency,
        start_attempts=settings.vonage_start_attempts,
        retry_wait=settings.vonage_retry_wait_seconds,
    )
    if kind == "vonage":
        return VonageVerifier(
            signing_auth(settings),
            options,
            channel_timeout=settings.vonage_channel_timeout,
            fallback_channels=settings.vonage_fallback_channels,
        )
    if kind == "vonage-legacy":
        if settings.vonage_api_key is None or settings.vonage_api_secret is None:
            raise ConfigError("VONAGE_API_KEY and VONAGE_API_SECRET are both needed")
        try:
            return VonageLegacyVerifier(
                api_key=settings.vonage_api_key,
                api_secret=settings.vonage_api_secret.get_secret_value(),
                options=options,
                pin_expiry=settings.code_validity_seconds,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return SandboxVerifier(
        show_code, code_length=settings.code_length, validity=settings.code_validity_seconds
    )
