"""What befalls a member who does not verify: a group's ``Consequence``, made concrete.

The core decides here, once for every platform, and a gate only turns the ``Sanction`` into
its platform's calls. The rule, by how the member was held:

==========  ===========================  ===================================
consequence  a member in the group        a join request
==========  ===========================  ===================================
kick        removed, may rejoin          declined
ban         banned (for a time/forever)  declined and banned
mute        stays restricted             declined (there is nothing to mute)
decline     removed, may rejoin          declined
==========  ===========================  ===================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from bot.consequence import Consequence


class GateRules(NamedTuple):
    """The gate's part of one community's policy: what to do to a member who fails, and
    after how many failed verifications in a day to do it at once (0: only at the deadline).
    """

    consequence: Consequence = Consequence()
    ban_after_failures: int = 0


@dataclass(frozen=True, slots=True)
class Sanction:
    """What to do to one held member. None of the flags set means: leave them restricted."""

    consequence: Consequence
    #: Decline their join request (they asked to join and are not in).
    decline: bool = False
    #: Take them out of the group, free to join again (a ban takes them out by itself).
    remove: bool = False
    #: Keep them out: until ``until`` (epoch seconds), or forever when it is 0.
    ban: bool = False
    until: int = 0

    @property
    def notice(self) -> str:
        """The key of what the member is told (under ``gate.``)."""
        if self.ban:
            return "banned_until" if self.until else "banned"
        if self.decline:
            return "declined"
        return "timed_out" if self.remove else "muted"


def sanction_for(consequence: Consequence, *, requested: bool, now: float) -> Sanction:
    """The sanction for a member held in a group (``requested``: by a join request)."""
    ban = consequence.kind == "ban"
    until = int(now) + consequence.ban_for if ban and consequence.ban_for else 0
    if requested:
        return Sanction(consequence, decline=True, ban=ban, until=until)
    if ban:
        return Sanction(consequence, ban=True, until=until)
    if consequence.kind == "mute":
        return Sanction(consequence)
    # kick, and "decline" for a member who joined directly: there is no request to decline.
    return Sanction(consequence, remove=True)
