"""Talk to the bot in a terminal: you are the member, stdin is your chat.

The sandbox verifier prints the code on stderr, the operator's side, just as Vonage
would text it to a phone.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import TextIO

from adapters._commands import command_word
from bot.engine import Engine, Outcome
from bot.flow import (
    Action,
    Cancel,
    ChangeNumber,
    Help,
    MemberEvent,
    Resend,
    Start,
    Status,
    Text,
)
from bot.identity import Member, MemberKey
from bot.texts import Catalogue

PLATFORM = "console"

COMMANDS: dict[str, MemberEvent] = {
    "start": Start(),
    "verify": Start(),
    "resend": Resend(),
    "change": ChangeNumber(),
    "cancel": Cancel(),
    "status": Status(),
    "help": Help(),
}
ACTION_COMMANDS = {
    Action.START: "/start",
    Action.RESEND: "/resend",
    Action.CHANGE_NUMBER: "/change",
    Action.CANCEL: "/cancel",
}
QUIT = ("/quit", "/exit")


def event_for(line: str) -> MemberEvent:
    if not line.startswith("/"):
        return Text(line)
    word = command_word(line, COMMANDS)
    return COMMANDS[word] if word else Help()


class ConsoleChat:
    def __init__(
        self,
        engine: Engine,
        catalogue: Catalogue,
        *,
        user_id: str | None = None,
        locale: str | None = None,
        stdin: TextIO,
        stdout: TextIO,
    ) -> None:
        self.engine = engine
        self.catalogue = catalogue
        self.locale = locale
        self.member = Member(
            MemberKey(PLATFORM, "local", user_id or getpass.getuser()), locale=locale
        )
        self.stdin = stdin
        self.stdout = stdout
        self.interactive = stdin.isatty()

    def say(self, line: str) -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def show(self, outcome: Outcome) -> None:
        for reply in outcome.replies:
            for line in self.catalogue.render(reply, self.locale).splitlines():
                self.say(f"bot: {line}")
            hints = [
                self.catalogue.text(
                    "console.action_hint",
                    self.locale,
                    command=ACTION_COMMANDS[action],
                    label=self.catalogue.action_label(action, self.locale),
                )
                for action in reply.actions
                if action in ACTION_COMMANDS
            ]
            if hints:
                self.say("     " + "  ".join(hints))

    async def render(self, outcome: Outcome) -> None:
        self.show(outcome)

    async def run(self) -> None:
        self.say(self.catalogue.text("console.banner", self.locale))
        self.say(self.catalogue.text("console.commands", self.locale))
        await self.engine.handle(self.member, Start(), render=self.render)
        while True:
            if self.interactive:
                self.stdout.write("you> ")
                self.stdout.flush()
            line = await asyncio.to_thread(self.stdin.readline)
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            if line.lower() in QUIT:
                break
            await self.engine.handle(self.member, event_for(line), render=self.render)
        self.say(self.catalogue.text("console.bye", self.locale))
