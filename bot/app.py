"""The running bot's parts, as the shell's bootstrap opens them: what an adapter is given.

It lives in the core so that adapters depend on the core only, never on the shell that
builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.bus import GatePort, SetbackPort, desk_handler, gate_handler, setback_handler
from bot.directory import Directory
from bot.engine import Engine
from bot.gate import Gatekeeper
from bot.moderation import Moderation, ModLog
from bot.policy import Policies
from bot.roles import RoleBook, RolePlatform
from bot.settings import Settings
from bot.store import Store
from bot.texts import Catalogue
from bot.verifier.base import Verifier


@dataclass(frozen=True)
class App:
    settings: Settings
    engine: Engine
    catalogue: Catalogue
    store: Store
    directory: Directory
    verifier: Verifier
    gatekeeper: Gatekeeper
    roles: RoleBook
    #: Ids named as admins in the settings, per platform.
    admins: Mapping[str, frozenset[str]]
    #: Each community's own rules (``policies.policy_for(scope)``), over the settings' defaults.
    policies: Policies

    def moderation(
        self, platforms: Mapping[str, RolePlatform], log: ModLog | None = None
    ) -> Moderation:
        """The moderators' desk for an adapter, acting through its ``platforms``."""
        return moderation_desk(
            self.directory,
            self.roles,
            self.admins,
            platforms,
            log,
            store=self.store,
            policies=self.policies,
        )

    def follow_verifications(
        self, platform: str, moderation: Moderation, gate: GatePort | None = None
    ) -> None:
        """What follows a verification on ``platform`` (``bot.bus``): its gate lets the
        member in, then the moderators' desk logs it and grants ``AUTO_ROLES``."""
        opening = [gate_handler(gate)] if gate is not None else []
        self.engine.bus.register(platform, [*opening, desk_handler(moderation)])
        # A trip of the SMS-fraud breaker goes to the same moderators' log.
        self.engine.bus.on_trip(platform, moderation.breaker_tripped)

    def follow_setbacks(self, platform: str, port: SetbackPort) -> None:
        """What follows a failed verification on ``platform``: its gate deals with the member
        (``ban_after_failures``) or queues them for the moderators' review."""
        self.engine.bus.register_setbacks(platform, [setback_handler(port)])


def moderation_desk(
    directory: Directory,
    roles: RoleBook,
    admins: Mapping[str, frozenset[str]],
    platforms: Mapping[str, RolePlatform],
    log: ModLog | None = None,
    *,
    store: Store | None = None,
    policies: Policies | None = None,
) -> Moderation:
    """How every moderators' desk is built: the running bot's (``App.moderation``) and the
    command line's (``verifybot.bootstrap.open_desk``), with a store only when it unlinks."""
    return Moderation(
        directory, roles, platforms, log, store=store, admins=admins, policies=policies
    )
