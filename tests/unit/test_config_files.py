"""The files an operator reads: every setting documented, the diagram current."""

from __future__ import annotations

import re
from pathlib import Path

from bot.diagram import mermaid
from bot.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_the_example_env() -> None:
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / "config/.env.example").read_text(), re.M))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_the_example_env_holds_the_defaults_and_loads(tmp_path: Path) -> None:
    lines = (ROOT / "config/.env.example").read_text()
    env = tmp_path / ".env"
    env.write_text(lines)
    assert load_settings(_env_file=env) == load_settings(_env_file=None)


def test_the_readme_diagram_is_generated_from_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"```mermaid\n{mermaid()}```" in readme
