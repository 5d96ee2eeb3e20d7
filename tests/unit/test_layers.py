"""The house's layers, read from the source: the core (``bot/``) imports nothing from the
platform adapters or from the shell (``verifybot/``) that builds it.

``bot/__main__.py`` is the one exception: an entry script that hands ``python -m bot`` to the
shell's command line, which no module imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRY_SCRIPT = Path("bot/__main__.py")


def imported_modules(source: Path) -> Iterator[str]:
    """Every module ``source`` imports, at any depth (inside functions and TYPE_CHECKING)."""
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def core_imports_of(packages: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """``path: module`` for each import in ``bot/`` of a module in one of ``packages``."""
    return [
        f"{path.relative_to(root)}: {module}"
        for path in sorted((root / "bot").rglob("*.py"))
        if path.relative_to(root) != ENTRY_SCRIPT
        for module in imported_modules(path)
        if module.split(".")[0] in packages
    ]


def test_the_core_imports_neither_adapters_nor_the_shell() -> None:
    assert core_imports_of(("adapters", "verifybot")) == []


def test_the_redis_store_and_the_limits_do_not_read_settings() -> None:
    for name in ("store.py", "limits.py"):
        imports = set(imported_modules(ROOT / "bot" / name))
        assert "bot.settings" not in imports, name
