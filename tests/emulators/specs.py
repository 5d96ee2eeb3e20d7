"""Where the official API descriptions are, for the emulators and their tests.

CI checks the repository out with ``shared/`` beside it; ``VERIFYBOT_SPECS`` overrides that,
and ``/work/shared/specs`` is the development machine's copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def find_specs(spec_file: str) -> Path:
    """The folder holding ``spec_file``, or the expected folder when none does."""
    for candidate in (
        os.environ.get("VERIFYBOT_SPECS"),
        REPO.parent / "shared" / "specs",
        "/work/shared/specs",
    ):
        if candidate and (Path(candidate) / spec_file).exists():
            return Path(candidate)
    return REPO.parent / "shared" / "specs"


def require_spec(spec_file: str) -> Path:
    """The path of ``spec_file``. Missing, it fails the test on CI and skips it elsewhere."""
    path = find_specs(spec_file) / spec_file
    if not path.exists():
        spec_missing(path)
    return path


def spec_missing(path: Path) -> None:
    message = f"{path} is not here (set VERIFYBOT_SPECS to the shared/specs folder)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
