"""The roles file: what an operator may write, and the one-line errors for what they may not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.roles import Role, RoleBookError, SlackRole, TelegramRole, load_role_book

ROOT = Path(__file__).resolve().parents[2]


def inline(roles: dict[str, object]) -> str:
    return json.dumps({"roles": roles})


def test_the_example_file_loads_with_every_platform_part() -> None:
    book = load_role_book(ROOT / "config/roles.example.toml", auto=("verified",))
    assert book.names == ("helper", "verified")
    assert book.auto == ("verified",)
    helper = book.get("Helper")
    assert helper == Role(
        name="helper",
        description="Trusted members who help newcomers",
        telegram=TelegramRole(chats=(-1009876543210,), title="helper"),
        slack=SlackRole(channels=("C0456EFGH",), usergroup=None),
    )


def test_roles_can_come_from_the_settings_as_json() -> None:
    book = load_role_book(None, inline({"vip": {"slack": {"channels": ["C0VIP"]}}}))
    vip = book.get("vip")
    assert vip is not None and vip.slack.channels == ("C0VIP",) and vip.telegram.chats == ()


def test_no_roles_file_means_no_roles() -> None:
    book = load_role_book(None)
    assert book.names == () and book.get("anything") is None


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({"VIP!": {}}, "lower-case letters"),
        ({"vip": {"telegram": {"chats": ["@group"]}}}, "list of chat ids"),
        ({"vip": {"telegram": {"chats": [-100], "title": "x" * 17}}}, "1-16 characters"),
        ({"vip": {"telegram": {"title": "boss"}}}, "needs telegram.chats"),
        ({"vip": {"slack": {"channels": ["#general"]}}}, "not #names"),
        ({"vip": {"slack": {"usergroup": "vips"}}}, "user group id"),
        ({"vip": {"discord": {}}}, "unknown key(s) discord"),
        ({"vip": {"slack": {"channel": ["C0VIP"]}}}, "unknown key(s) channel"),
    ],
)
def test_a_mistake_in_a_role_is_named_in_one_line(roles: dict[str, object], message: str) -> None:
    with pytest.raises(RoleBookError, match=re.escape(message)) as caught:
        load_role_book(None, inline(roles))
    assert "\n" not in str(caught.value)


def test_auto_roles_must_name_defined_roles() -> None:
    with pytest.raises(RoleBookError, match=r"AUTO_ROLES names undefined role\(s\) vip"):
        load_role_book(None, inline({"verified": {}}), auto=("verified", "vip"))


def test_a_missing_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RoleBookError, match="does not exist"):
        load_role_book(tmp_path / "roles.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[roles.vip\n")
    with pytest.raises(RoleBookError, match="cannot read ROLES_FILE"):
        load_role_book(broken)
    with pytest.raises(RoleBookError, match="not both"):
        load_role_book(broken, "{}")
