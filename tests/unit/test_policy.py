"""A community's policy: each field read and written as the settings file does, refused with the
same one line, laid over the defaults, and turned into the conversation's policy."""

from __future__ import annotations

import pytest

from bot.consequence import Consequence
from bot.flow import (
    Context,
    Conversation,
    FlowPolicy,
    LinkLookedUp,
    LinksCounted,
    MemberVerified,
    PhoneGiven,
    Purpose,
    Reply,
    State,
    step,
)
from bot.identity import MemberKey
from bot.phone import PhonePolicy
from bot.policy import (
    FIELDS,
    WELCOME_LIMIT,
    CommunityPolicy,
    parse_field,
    scope_for,
    write_field,
)
from bot.settings import ConfigError, load_settings

BASE = FlowPolicy(phone=PhonePolicy(default_region="GB"), code_length=6)
FR_MOBILE = "+33 6 12 34 56 78"
GB_MOBILE = "+44 7400 123456"


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("gate_mode", "join_request", "join_request"),
        ("gate_mode", " OFF ", "off"),
        ("verify_timeout", "15m", 900),
        ("verify_timeout", "0", 0),
        ("consequence", "ban:7d", Consequence("ban", 7 * 86400)),
        ("consequence", "mute", Consequence("mute")),
        ("ban_after_failures", "3", 3),
        ("admit_verified", "anywhere", "anywhere"),
        ("allowed_countries", "gb, ie", frozenset({"GB", "IE"})),
        ("allowed_countries", "", frozenset()),
        ("blocked_countries", "FR", frozenset({"FR"})),
        ("allowed_number_types", "mobile", frozenset({"MOBILE"})),
        ("max_accounts_per_phone", "2", 2),
        ("default_language", "ES", "es"),
        ("welcome", "  Read the rules <b>first</b>  ", "Read the rules <b>first</b>"),
        ("welcome", "", None),
        ("log_chat", "-1001234567890", "-1001234567890"),
        ("log_chat", "", None),
        ("auto_roles", "Verified, helper", ("verified", "helper")),
    ],
)
def test_each_field_reads_its_written_form_and_writes_it_back(
    name: str, text: str, value: object
) -> None:
    parsed = parse_field(name, text)
    assert parsed == value
    assert parse_field(name, write_field(name, parsed)) == value


def test_every_field_of_the_policy_can_be_read() -> None:
    defaults = CommunityPolicy()
    for name in FIELDS:
        assert parse_field(name, defaults.written(name)) == getattr(defaults, name)


@pytest.mark.parametrize(
    ("name", "text", "setting"),
    [
        ("allowed_countries", "GB,Narnia", "ALLOWED_COUNTRIES"),
        ("allowed_number_types", "MOBILE,PIGEON", "ALLOWED_NUMBER_TYPES"),
        ("log_chat", "#mods", "TELEGRAM_LOG_CHAT_ID"),
    ],
)
def test_a_bad_value_is_refused_with_the_settings_file_s_own_line(
    name: str, text: str, setting: str
) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]+$") as in_chat:
        parse_field(name, text)
    with pytest.raises(ConfigError) as in_file:
        load_settings(_env_file=None, **{setting.lower(): text})
    assert f"{setting}: {in_chat.value}" in str(in_file.value)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("gate_mode", "lock", "is not one of restrict, join_request, off"),
        ("verify_timeout", "soon", "is not a duration"),
        ("verify_timeout", "31d", "longer than 30d"),
        ("consequence", "ban:5s", "from 30s to 366d"),
        ("ban_after_failures", "-1", "whole number from 0 to 100"),
        ("max_accounts_per_phone", "0", "whole number from 1 to 1000"),
        ("welcome", "x" * (WELCOME_LIMIT + 1), f"{WELCOME_LIMIT} characters at most"),
        ("default_language", "en; drop", "not a language code"),
        ("colour", "blue", "unknown policy field"),
    ],
)
def test_values_out_of_bounds_are_refused_in_one_line(name: str, text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        parse_field(name, text)
    assert "\n" not in str(refused.value)


def test_a_slack_community_names_its_log_channel_as_slack_does() -> None:
    assert parse_field("log_chat", "C0123ABCD", platform="slack") == "C0123ABCD"
    with pytest.raises(ValueError, match="channel id"):
        parse_field("log_chat", "-1001234", platform="slack")


def test_overrides_replace_only_the_fields_a_community_set() -> None:
    defaults = CommunityPolicy(verify_timeout=3600, blocked_countries=frozenset({"RU"}))
    mine = defaults.with_overrides({"gate_mode": "off", "allowed_countries": "GB"})
    assert (mine.gate_mode, mine.allowed_countries) == ("off", frozenset({"GB"}))
    assert (mine.verify_timeout, mine.blocked_countries) == (3600, frozenset({"RU"}))


def test_a_stored_value_that_no_longer_parses_leaves_the_default() -> None:
    defaults = CommunityPolicy(gate_mode="join_request")
    assert defaults.with_overrides({"gate_mode": "lock", "colour": "blue"}) == defaults


def test_the_community_is_the_place_that_sent_the_member_else_their_own_scope() -> None:
    telegram = MemberKey("telegram", "123456", "42")
    assert scope_for(telegram, "-1001234") == "telegram:-1001234"
    assert scope_for(telegram, None) == "telegram:123456"
    assert scope_for(MemberKey("slack", "T0TEAM", "U0ADA"), None) == "slack:T0TEAM"


# -- the conversation reads the policy it is given ---------------------------------------------


def _phone_step(policy: FlowPolicy, number: str) -> tuple[State, tuple[object, ...]]:
    result = step(Conversation(state=State.AWAIT_PHONE), PhoneGiven(number), Context(0.0), policy)
    return result.conversation.state, result.effects


def test_the_flow_refuses_a_country_only_the_community_blocks() -> None:
    blocking = CommunityPolicy(blocked_countries=frozenset({"FR"})).flow_policy(BASE)
    open_ = CommunityPolicy().flow_policy(BASE)

    _, refused = _phone_step(blocking, FR_MOBILE)
    _, accepted = _phone_step(open_, FR_MOBILE)

    assert [e.key for e in refused if isinstance(e, Reply)] == ["phone.country_not_allowed"]
    assert not any(isinstance(e, Reply) for e in accepted)


def test_the_community_keeps_the_operator_s_process_wide_parts() -> None:
    policy = CommunityPolicy(allowed_countries=frozenset({"GB"}), max_accounts_per_phone=3)
    flow = policy.flow_policy(FlowPolicy(phone=PhonePolicy(default_region="GB"), code_length=8))
    assert (flow.code_length, flow.phone.default_region) == (8, "GB")
    assert (flow.phone.allowed_countries, flow.max_accounts_per_phone) == (frozenset({"GB"}), 3)


def test_max_accounts_per_phone_is_the_community_s() -> None:
    two = CommunityPolicy(max_accounts_per_phone=2).flow_policy(BASE)
    one = CommunityPolicy().flow_policy(BASE)
    held_once = Conversation(state=State.AWAIT_PHONE, phone="+447400123456", country="GB")
    assert step(held_once, LinksCounted(1), Context(0.0), two).conversation.state is State.STARTING
    assert step(held_once, LinksCounted(1), Context(0.0), one).conversation.state is not (
        State.STARTING
    )


def test_a_member_verified_elsewhere_must_meet_the_rules_of_the_group_that_sent_them() -> None:
    blocking = CommunityPolicy(blocked_countries=frozenset({"FR"})).flow_policy(BASE)
    sent_by_group = Conversation(origin="-1001234")
    french = LinkLookedUp(Purpose.START, "+33612345678", 1.0)

    refused = step(sent_by_group, french, Context(10.0), blocking)
    let_in = step(sent_by_group, french, Context(10.0), CommunityPolicy().flow_policy(BASE))

    assert refused.conversation.state is State.AWAIT_PHONE
    assert [e.key for e in refused.effects if isinstance(e, Reply)] == ["phone.country_not_allowed"]
    assert not any(isinstance(e, MemberVerified) for e in refused.effects)
    assert let_in.conversation.state is State.VERIFIED
    assert MemberVerified("+33612345678", "-1001234", fresh=False) in let_in.effects


def test_a_community_accepts_a_number_verified_elsewhere_only_by_its_own_rules() -> None:
    assert CommunityPolicy().accepts("+33612345678", BASE)
    assert not CommunityPolicy(blocked_countries=frozenset({"FR"})).accepts("+33612345678", BASE)
    assert not CommunityPolicy(allowed_countries=frozenset({"GB"})).accepts("+33612345678", BASE)
