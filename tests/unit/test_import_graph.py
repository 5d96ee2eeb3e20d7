"""The house's shape, checked on the source: no import cycle between modules of ``bot/``,
``adapters/`` and the shell (``verifybot/``), and the core never imports an adapter or the
shell. Every import counts: at module level, inside a function, and under TYPE_CHECKING, as
each of them is a dependency a reader has to follow."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "adapters", "verifybot")
#: The shell, which the core must not import.
OUTSIDE_THE_CORE = ("adapters", "verifybot")
#: ``python -m bot``: an entry script that hands over to the shell's command line. No module
#: imports it, so the core still depends on nothing outside itself.
ENTRY_SCRIPT = "bot.__main__"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        folder = ROOT / package
        for path in sorted(folder.rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """Every project module that ``name`` (at ``path``) imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import module`` names a module; ``from module import name`` not.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(path, name, known)) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, found by a depth-first walk (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_there_is_no_import_cycle_between_modules() -> None:
    assert cycles(graph()) == []


def test_the_core_imports_no_adapter_and_not_the_shell() -> None:
    crossings = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source.split(".")[0] == "bot" and source != ENTRY_SCRIPT
        for target in targets
        if target.split(".")[0] in OUTSIDE_THE_CORE
    )
    assert crossings == []


def test_the_redis_store_and_the_limits_do_not_read_settings() -> None:
    edges = graph()
    assert "bot.settings" not in edges["bot.store"]
    assert "bot.settings" not in edges["bot.limits"]


def test_no_module_imports_the_entry_script() -> None:
    assert [source for source, targets in graph().items() if ENTRY_SCRIPT in targets] == []


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks above can fail: a cycle hidden in a function or behind TYPE_CHECKING is
    found, and so is ``from package import module``."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from bot.engine import Engine\n"
        "def later():\n    import adapters.console\n"
        "from adapters import telegram\n"
    )
    known = {"bot.engine": source, "adapters.console": source, "adapters.telegram": source}
    assert set(imported(source, "bot.m", known)) == {
        "bot.engine",
        "adapters.console",
        "adapters.telegram",
    }
