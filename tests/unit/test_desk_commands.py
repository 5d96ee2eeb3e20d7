"""One table of the moderators' commands serves both desks: the same commands on Telegram and
Slack, with the same ranks and the same words needed."""

from __future__ import annotations

from adapters.slack.desk import ABOUT_A_MEMBER, SUBCOMMANDS
from adapters.telegram.desk import DESK_COMMANDS
from adapters.telegram.service import ADMIN_COMMANDS as TELEGRAM_MENU
from bot.desk_commands import ADMIN_COMMANDS, COMMANDS, MODERATOR_COMMANDS
from bot.moderation import Rank


def test_both_desks_know_the_same_commands() -> None:
    assert set(DESK_COMMANDS) == set(COMMANDS)
    assert set(SUBCOMMANDS) == {"help", *COMMANDS}
    menu = [name for name, _ in TELEGRAM_MENU]
    assert menu == ["verify", "settings", *MODERATOR_COMMANDS, *ADMIN_COMMANDS]


def test_who_may_give_each_command() -> None:
    assert MODERATOR_COMMANDS == ("grant", "revoke", "roles")
    assert ADMIN_COMMANDS == ("whois", "verified", "stats", "export", "unlink", "fraud")
    assert all(COMMANDS[name].rank is Rank.MODERATOR for name in MODERATOR_COMMANDS)


def test_the_words_each_command_needs() -> None:
    assert {name: needed for name, needed in SUBCOMMANDS.items() if needed} == {
        "grant": 2,
        "revoke": 2,
        "whois": 1,
        "unlink": 1,
    }
    assert {"grant", "revoke", "roles", "whois", "unlink"} == ABOUT_A_MEMBER
