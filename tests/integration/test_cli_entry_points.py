"""Every way to start the command line offers the same commands, the moderation ones too.

``verifybot.cli`` run as a module once stopped at its ``__main__`` guard before the roles and
users commands below it were registered, so ``python -m verifybot.cli roles --help`` listed none.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unconfigured_environment

#: ``python -m <module>``: the shell's package, its CLI module, and the core's old entry.
MODULES = ("verifybot", "verifybot.cli", "bot")

SUBCOMMANDS = {
    "roles": ("list", "grant", "revoke", "sync"),
    "users": ("list", "show", "export", "unlink"),
}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("group", sorted(SUBCOMMANDS))
def test_a_command_group_lists_its_subcommands_however_it_is_started(
    module: str, group: str, tmp_path: Path
) -> None:
    env = unconfigured_environment() | {"COLUMNS": "200", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", module, group, "--help"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = {line.strip(" │").split(" ")[0] for line in result.stdout.splitlines()}
    assert set(SUBCOMMANDS[group]) <= listed, result.stdout
