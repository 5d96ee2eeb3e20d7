"""Every Redis key verifybot uses, built in one place under the operator's ``REDIS_PREFIX``.

The formats are part of the deployed data: a running service finds its conversations, claims,
limits and gate holds by them, so they never change shape (tests/unit/test_keys.py pins them).
Lua scripts that build keys themselves are given the prefixes below (``gate_holds``,
``gate_of_prefix``), never their own copies.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.identity import MemberKey


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "verifybot:"

    # -- the conversation store ---------------------------------------------------------------

    def conversation(self, member: MemberKey) -> str:
        return f"{self.prefix}conv:{member.platform}:{member.scope}:{member.user_id}"

    def delivery(self, member: MemberKey, delivery_id: str) -> str:
        """A platform delivery already seen (for deduplication)."""
        return f"{self.prefix}seen:{member.platform}:{member.scope}:{delivery_id}"

    def verified(self, member: MemberKey) -> str:
        """The directory's answer about the member's verification, kept (``KnownLink``)."""
        return f"{self.prefix}verified:{member.platform}:{member.scope}:{member.user_id}"

    def claim(self, phone: str) -> str:
        """Which member's verification holds this number."""
        return f"{self.prefix}claim:{phone}"

    def limit(self, name: str, window: int, subject: str) -> str:
        return f"{self.prefix}rl:{name}:{window}:{subject}"

    def stash(self, name: str) -> str:
        return f"{self.prefix}stash:{name}"

    # -- the SMS-fraud breaker (``bot.fraud``) --------------------------------------------------

    def fraud(self, log: str, field: str) -> str:
        """A scope's ``sent`` or ``verified`` log, or its ``pause``; ``field`` is a
        ``Scope.field`` such as ``prefix:+3461234``."""
        return f"{self.prefix}fraud:{log}:{field}"

    @property
    def fraud_paused(self) -> str:
        """Every pause's scope, by when it ends (for ``verifybot fraud status``)."""
        return f"{self.prefix}fraud:paused"

    def inbox(self, platform: str, bot: str) -> str:
        """Updates a bot took from its platform and has not finished handling (``bot.inbox``)."""
        return f"{self.prefix}inbox:{platform}:{bot}"

    # -- the gate -----------------------------------------------------------------------------

    @property
    def gate_holds(self) -> str:
        """The prefix of every hold's key; a hold's own key adds its ``Hold.field``."""
        return f"{self.prefix}gate:hold:"

    def gate_hold(self, field: str) -> str:
        return f"{self.gate_holds}{field}"

    @property
    def gate_of_prefix(self) -> str:
        return f"{self.prefix}gate:of:"

    def gate_of(self, member: MemberKey) -> str:
        """The places where ``member`` is held."""
        return f"{self.gate_of_prefix}{member}"

    @property
    def gate_due(self) -> str:
        """Every hold with a deadline, by deadline."""
        return f"{self.prefix}gate:due"

    def gate_covered(self, place: str) -> str:
        """The members a place's welcome notice serves."""
        return f"{self.prefix}gate:covered:{place}"

    def gate_notice(self, place: str) -> str:
        return f"{self.prefix}gate:notice:{place}"

    def gate_welcomed(self, place: str) -> str:
        """Set while a welcome posted at ``place`` is recent (the welcome pace)."""
        return f"{self.prefix}gate:welcomed:{place}"

    def gate_failures(self, member: MemberKey) -> str:
        """How many verifications ``member`` failed today (``ban_after_failures``)."""
        return f"{self.prefix}gate:failed:{member}"

    # -- the moderators' review queue ------------------------------------------------------------

    def review(self, entry_id: str) -> str:
        """One entry of the review queue, until a moderator decides it."""
        return f"{self.prefix}review:{entry_id}"

    def review_open(self, field: str) -> str:
        """The open entry for a member at a place (a ``Hold.field``): one at a time."""
        return f"{self.prefix}review:open:{field}"

    # -- communities' policies ----------------------------------------------------------------

    def policy(self, scope: str) -> str:
        """A community's stored policy (``bot.policy``), cached from the directory."""
        return f"{self.prefix}policy:{scope}"
