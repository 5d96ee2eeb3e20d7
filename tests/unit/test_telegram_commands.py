"""A Telegram command is a whole first word spelling a known command in the Bot API's
alphabet; lookalikes, combining marks and other bots' commands are no command at all."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters._commands import command_word

KNOWN = frozenset({"grant", "revoke", "roles", "whois", "verified", "stats", "export", "unlink"})


def test_a_known_command_is_found_with_its_arguments_and_any_case() -> None:
    assert command_word("/export", KNOWN) == "export"
    assert command_word("/Grant @ada helper", KNOWN) == "grant"
    assert command_word("  /stats\n", KNOWN) == "stats"


def test_a_command_addressed_to_this_bot_counts_and_to_another_bot_does_not() -> None:
    assert command_word("/export@VerifyBot", KNOWN, bot_username="verifybot") == "export"
    assert command_word("/export@OtherBot", KNOWN, bot_username="verifybot") is None


def test_lookalikes_and_combining_marks_are_not_the_command_they_resemble() -> None:
    assert command_word("/export\u0308", KNOWN) is None  # t + COMBINING DIAERESIS
    assert command_word("/expor\u1e97", KNOWN) is None  # the precomposed ẗ
    assert command_word("/\u0435xport", KNOWN) is None  # Cyrillic е
    assert command_word("/ｅｘｐｏｒｔ", KNOWN) is None  # fullwidth
    assert command_word("/export\u200b", KNOWN) is None  # a zero-width space is not a space


def test_unknown_overlong_or_empty_words_are_no_command() -> None:
    assert command_word("/exports", KNOWN) is None
    assert command_word("/" + "a" * 33, KNOWN) is None
    assert command_word("export", KNOWN) is None
    assert command_word("", KNOWN) is None
    assert command_word(None, KNOWN) is None
    assert command_word("/", KNOWN) is None


@given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=40)))
def test_any_text_gives_a_known_command_or_none_and_never_raises(
    text: str, bot_username: str | None
) -> None:
    word = command_word(text, KNOWN, bot_username=bot_username)
    assert word is None or word in KNOWN


_MARKS = st.characters(categories=("Mn", "Me", "Cf"))
_LOOKALIKES = st.sampled_from(["\u0435", "\u043e", "\u0440", "\u0455", "\u0456", "ｅ", "ѕ", "ı"])


@given(st.sampled_from(sorted(KNOWN)), _MARKS, st.integers(min_value=1, max_value=12))
def test_a_mark_anywhere_inside_a_command_makes_it_no_command(
    command: str, mark: str, at: int
) -> None:
    at = min(at, len(command))
    typed = "/" + command[:at] + mark + command[at:]
    assert command_word(typed, KNOWN) is None


@given(st.sampled_from(sorted(KNOWN)), _LOOKALIKES, st.integers(min_value=0, max_value=11))
def test_a_lookalike_letter_makes_it_no_command(command: str, lookalike: str, at: int) -> None:
    at = min(at, len(command) - 1)
    typed = "/" + command[:at] + lookalike + command[at + 1 :]
    assert command_word(typed, KNOWN) is None


@given(
    st.sampled_from(sorted(KNOWN)),
    st.from_regex(r"[A-Za-z0-9_]{1,64}", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_categories=("Z", "Cc")), max_size=20),
)
def test_this_bots_suffix_and_any_arguments_keep_the_command(
    command: str, username: str, argument: str
) -> None:
    typed = f"/{command.upper()}@{username} {argument}"
    assert command_word(typed, KNOWN, bot_username=username.lower()) == command
