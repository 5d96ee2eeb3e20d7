"""Verifiers: Vonage Verify v2 (default), legacy v1, and a sandbox for local use.

The shell's bootstrap (``verifybot.bootstrap.build_verifier``) picks one from the settings.
"""

from __future__ import annotations

import warnings

from bot._optional import without

# Vonage answers JSON, which requests decodes as UTF-8 without guessing (RFC 8259); without a
# detector installed it would warn once (RequestsDependencyWarning), which says nothing here.
with without("charset_normalizer", "chardet"), warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Unable to find acceptable character detection")
    import requests  # noqa: F401  # first, so that bot.verifier's modules find it imported

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
