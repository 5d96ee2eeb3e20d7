"""The bus carries a verification to what follows it: in order, per platform, and a handler
that fails costs the others nothing."""

from __future__ import annotations

from structlog.testing import capture_logs

from bot.bus import Bus, Handler, desk_handler, gate_handler, setback_handler
from bot.flow import MemberSetback, MemberVerified, Setback
from bot.identity import Member, MemberKey

ALICE = Member(MemberKey("telegram", "bot1", "1001"), display_name="Alice")
SLACKER = Member(MemberKey("slack", "T1", "U1"))
FRESH = MemberVerified("+447400123456", "-100")
BACK_BY_LINK = MemberVerified("+447400123456", "-100", fresh=False)


class Journal:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def handler(self, name: str, *, fails: bool = False) -> Handler:
        async def handle(member: Member, verified: MemberVerified) -> None:
            self.lines.append(f"{name}:{member.key.user_id}:{verified.fresh}")
            if fails:
                raise RuntimeError("the platform is down")

        return handle


async def test_handlers_run_in_the_order_registered() -> None:
    bus, journal = Bus(), Journal()
    bus.register("telegram", [journal.handler("gate"), journal.handler("desk")])
    await bus.publish(ALICE, FRESH)
    assert journal.lines == ["gate:1001:True", "desk:1001:True"]


async def test_a_failing_handler_is_logged_and_the_next_still_runs() -> None:
    bus, journal = Bus(), Journal()
    bus.register("telegram", [journal.handler("gate", fails=True), journal.handler("desk")])
    with capture_logs() as logged:
        await bus.publish(ALICE, FRESH)  # does not raise
    assert journal.lines == ["gate:1001:True", "desk:1001:True"]
    assert [entry["event"] for entry in logged] == ["verified_handler_failed"]
    assert logged[0]["member"] == "telegram:bot1:1001"


async def test_only_the_members_platform_hears_of_it() -> None:
    bus, journal = Bus(), Journal()
    bus.register("telegram", [journal.handler("telegram")])
    bus.register("slack", [journal.handler("slack")])
    await bus.publish(SLACKER, FRESH)
    assert journal.lines == ["slack:U1:True"]


async def test_registering_a_platform_again_replaces_its_handlers() -> None:
    bus, journal = Bus(), Journal()
    bus.register("telegram", [journal.handler("first")])
    bus.register("telegram", [journal.handler("second")])
    await bus.publish(ALICE, FRESH)
    assert journal.lines == ["second:1001:True"]


async def test_a_platform_without_handlers_is_a_no_op() -> None:
    await Bus().publish(Member(MemberKey("console", "local", "me")), FRESH)


async def test_the_gate_hears_the_origin_and_the_desk_hears_whether_it_is_news() -> None:
    heard: list[tuple[str, object]] = []

    class Gate:
        async def member_verified(
            self, member: Member, *, origin: str | None = None, phone: str | None = None
        ) -> None:
            heard.append(("gate", origin))

    class Desk:
        async def member_verified(
            self, member: Member, *, fresh: bool = True, origin: str | None = None
        ) -> None:
            heard.append(("desk", (fresh, origin)))

    bus = Bus()
    bus.register("telegram", [gate_handler(Gate()), desk_handler(Desk())])
    await bus.publish(ALICE, BACK_BY_LINK)
    assert heard == [("gate", "-100"), ("desk", (False, "-100"))]


async def test_a_member_held_nowhere_costs_the_gate_nothing_unless_a_group_sent_them() -> None:
    asked: list[str | None] = []

    class Gate:
        async def member_verified(
            self, member: Member, *, origin: str | None = None, phone: str | None = None
        ) -> None:
            asked.append(origin)

    handler = gate_handler(Gate())
    await handler(ALICE, MemberVerified("+447400123456", None, held=False))
    assert asked == []
    await handler(ALICE, MemberVerified("+447400123456", "-100", held=False))
    await handler(ALICE, MemberVerified("+447400123456", None))  # held, or not known
    assert asked == ["-100", None]


async def test_a_setback_reaches_its_platforms_gate_and_a_failure_is_only_logged() -> None:
    heard: list[tuple[str, str]] = []

    class Gate:
        def __init__(self, name: str, *, fails: bool = False) -> None:
            self.name, self.fails = name, fails

        async def member_set_back(self, member: Member, setback: MemberSetback) -> None:
            heard.append((self.name, setback.setback.value))
            if self.fails:
                raise RuntimeError("the platform is down")

    bus = Bus()
    bus.register_setbacks("telegram", [setback_handler(Gate("telegram", fails=True))])
    bus.register_setbacks("slack", [setback_handler(Gate("slack"))])
    with capture_logs() as logged:
        await bus.publish_setback(ALICE, MemberSetback(Setback.FAILED, "-100"))
    await bus.publish_setback(SLACKER, MemberSetback(Setback.LIMITED))
    await bus.publish_setback(
        Member(MemberKey("console", "local", "me")), MemberSetback(Setback.LIMITED)
    )

    assert heard == [("telegram", "failed"), ("slack", "limited")]
    assert [entry["event"] for entry in logged] == ["setback_handler_failed"]
