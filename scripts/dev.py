#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.11+.

    python3 scripts/dev.py console   # talk to the bot in this terminal, embedded defaults
    python3 scripts/dev.py test      # lint, types and the whole test suite
    python3 scripts/dev.py verifybot ARGS...   # any other verifybot command

It makes ``.venv`` beside this project and installs verifybot with its test tools into it
the first time (and again whenever pyproject.toml changes). Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".verifybot-installed"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be run by an older python3
        sys.exit(f"verifybot needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"dev: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev: installing verifybot and its test tools into .venv", file=sys.stderr)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def run(*command: str) -> int:
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def test(pytest_args: list[str]) -> int:
    packages = ("bot", "adapters", "verifybot", "tests", "bench", "scripts")
    linted = [p for p in packages if (ROOT / p).is_dir()]
    steps = [
        ("ruff", [str(BIN / "ruff"), "check", *linted]),
        ("ruff format", [str(BIN / "ruff"), "format", "--check", "bot", "adapters", "verifybot"]),
        ("mypy", [str(BIN / "mypy")]),
        ("pytest", [str(BIN / "pytest"), *pytest_args]),
    ]
    for name, command in steps:
        print(f"dev: {name}", file=sys.stderr, flush=True)
        code = run(*command)
        if code != 0:
            print(f"dev: {name} failed (exit {code})", file=sys.stderr)
            return code
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "test":
        return test(rest)
    if command == "console":
        return run(str(BIN / "verifybot"), "console", *rest)
    if command == "verifybot":
        return run(str(BIN / "verifybot"), *rest)
    print(f"dev: unknown command {command!r}; try: console, test, verifybot", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
