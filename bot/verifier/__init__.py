"""Verifiers: Vonage Verify v2 (default), legacy v1, and a sandbox for local use.

The shell's bootstrap (``verifybot.bootstrap.build_verifier``) picks one from the settings.
"""

from __future__ import annotations

from bot.verifier.base import Verifier
from bot.verifier.sandbox import SandboxVerifier
from bot.verifier.vonage_legacy import VonageLegacyVerifier
from bot.verifier.vonage_v2 import VonageVerifier

__all__ = [
    "SandboxVerifier",
    "Verifier",
    "VonageLegacyVerifier",
    "VonageVerifier",
]
