"""Redis keys are deployed data: the builder must give, byte for byte, the keys that the store
and the gate wrote before it existed, or a running service would lose its conversations,
claims, limits and holds on upgrade. The expected values are the old f-strings, verbatim."""

from __future__ import annotations

import pytest

from bot.gate import Hold
from bot.identity import MemberKey
from bot.keys import Keys

MEMBERS = [
    MemberKey("telegram", "123456789", "42"),
    MemberKey("slack", "T0TEAM", "U0ADA"),
    # Whatever a platform sends: separators, spaces, non-ASCII.
    MemberKey("slack", "E:1|x", "ünï cøde"),
]
PREFIXES = ["verifybot:", "prod:eu:", ""]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("member", MEMBERS)
def test_the_store_s_keys_are_the_old_ones(prefix: str, member: MemberKey) -> None:
    keys = Keys(prefix)
    m = member
    assert keys.conversation(m) == f"{prefix}conv:{m.platform}:{m.scope}:{m.user_id}"
    assert keys.delivery(m, "update-7") == f"{prefix}seen:{m.platform}:{m.scope}:update-7"
    assert keys.claim("+447400123456") == f"{prefix}claim:+447400123456"
    assert keys.limit("sms_phone", 3600, "+44740012") == f"{prefix}rl:sms_phone:3600:+44740012"
    assert keys.limit("wrong_codes", 86400, str(m)) == f"{prefix}rl:wrong_codes:86400:{m}"
    assert keys.stash("unlink:abc") == f"{prefix}stash:unlink:abc"


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("member", MEMBERS)
def test_the_gate_s_keys_are_the_old_ones(prefix: str, member: MemberKey) -> None:
    keys = Keys(prefix)
    old = f"{prefix}gate:"  # the gate's own prefix, as Gate.__init__ built it
    hold = Hold(place="-1001234", member=member, kind="restrict")
    assert keys.gate_hold(hold.field) == f"{old}hold:{hold.field}"
    assert keys.gate_hold(hold.field) == f"{prefix}gate:hold:-1001234|{member}"
    assert keys.gate_holds == f"{old}hold:"
    assert keys.gate_of(member) == f"{old}of:{member}"
    assert keys.gate_of_prefix == f"{old}of:"
    assert keys.gate_due == f"{old}due"
    assert keys.gate_covered("-1001234") == f"{old}covered:-1001234"
    assert keys.gate_notice("-1001234") == f"{old}notice:-1001234"
    assert keys.gate_welcomed("-1001234") == f"{old}welcomed:-1001234"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_fraud_breaker_s_keys(prefix: str) -> None:
    keys = Keys(prefix)
    assert keys.fraud("sent", "prefix:+44740012") == f"{prefix}fraud:sent:prefix:+44740012"
    assert keys.fraud("pause", "country:ES") == f"{prefix}fraud:pause:country:ES"
    assert keys.fraud_paused == f"{prefix}fraud:paused"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_bot_s_inbox_key(prefix: str) -> None:
    assert Keys(prefix).inbox("telegram", "123456") == f"{prefix}inbox:telegram:123456"


def test_the_default_prefix_is_the_store_s_default() -> None:
    assert Keys().prefix == "verifybot:"
