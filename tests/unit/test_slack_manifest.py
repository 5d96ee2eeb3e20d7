"""config/slack-app-manifest.yml lists everything adapters.slack registers.

PyYAML is not a dependency, so this reads the manifest's few block lists by indentation:
enough for its fixed structure, and strict about it."""

from __future__ import annotations

import re
from pathlib import Path

from adapters import slack

MANIFEST = Path(__file__).resolve().parents[2] / "config" / "slack-app-manifest.yml"


def block_list(text: str, key: str) -> list[str]:
    """The ``- item`` lines under ``key:``, comments skipped."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{key}:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    items = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        if stripped.startswith("- "):
            items.append(stripped[2:].split("#")[0].strip())
    return items


def test_the_manifest_lists_every_event_command_and_scope() -> None:
    text = MANIFEST.read_text()
    assert set(block_list(text, "bot_events")) == set(slack.EVENTS)
    commands = re.findall(r"^\s*- command: (\S+)", text, re.M)
    assert commands == list(slack.COMMANDS)
    shortcuts = re.findall(r"^\s*callback_id: (\S+)", text, re.M)
    assert shortcuts == list(slack.SHORTCUTS)
    assert set(block_list(text, "bot")) >= {
        "chat:write",
        "commands",
        "im:history",
        "im:read",
        "im:write",
        "users:read",
        "channels:manage",
        "groups:write",
        "usergroups:read",
        "usergroups:write",
        "files:write",
    }


def test_the_manifest_turns_on_what_the_adapter_needs() -> None:
    text = MANIFEST.read_text()
    for setting in ("home_tab_enabled: true", "messages_tab_enabled: true", "is_enabled: true"):
        assert setting in text
    assert re.search(r"^\s*socket_mode_enabled: false$", text, re.M)
    assert "\t" not in text  # YAML refuses tabs
    urls = re.findall(r"(?:request_url|url): (\S+)", text)
    assert urls and all(url.endswith("/slack/events") for url in urls)
