"""What ``verifybot run telegram`` imports, checked in a fresh interpreter: libraries' optional
extras that the running bot never uses (bot/_optional.py), and the ORM, which only the
moderators' and operators' directory methods use, stay out of it. Their memory is in
bench/README.md (fix/mem2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The modules ``verifybot run telegram`` imports before it connects (verifybot/cli.py).
RUN_TELEGRAM = """
import json, sys
import verifybot.cli
from verifybot import ops
from verifybot.bootstrap import open_app
import adapters.telegram
import sqlalchemy.dialects.sqlite.pysqlite
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(code: str) -> set[str]:
    found = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(found.stdout))


def test_run_telegram_imports_none_of_the_extras_it_does_not_use() -> None:
    modules = imported_by(RUN_TELEGRAM)
    assert "structlog" in modules and "requests" in modules  # the code under test ran
    # greenlet is hidden from structlog, but the Vonage verifiers use it (verifier/_loop_http.py)
    unwanted = {"rich", "pygments", "charset_normalizer", "chardet"}
    assert sorted(unwanted & {name.partition(".")[0] for name in modules}) == []


def test_run_telegram_imports_the_directory_without_the_orm() -> None:
    modules = imported_by(RUN_TELEGRAM)
    assert "bot.directory.directory" in modules
    assert sorted(name for name in modules if name.startswith("sqlalchemy.orm")) == []
    assert "bot.directory.models" not in modules


def test_the_hidden_extras_import_as_usual_afterwards() -> None:
    modules = imported_by(RUN_TELEGRAM.replace("print(", "import rich.console\nprint("))
    assert "rich.console" in modules
