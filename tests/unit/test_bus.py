"""The bus carries a verification to what follows it: in order, per platform, and a handler
that fails costs the others nothing."""

from __future__ import annotations

from structlog.testing import capture_logs

from bot.bus import Bus, Handler, desk_handler, gate_handler
from bot.flow import MemberVerified
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
        async def member_verified(self, member: Member, *, fresh: bool = True) -> None:
            heard.append(("desk", fresh))

    bus = Bus()
    bus.register("telegram", [gate_handler(Gate()), desk_handler(Desk())])
    await bus.publish(ALICE, BACK_BY_LINK)
    assert heard == [("gate", "-100"), ("desk", False)]
