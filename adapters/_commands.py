"""Which command a message gives, matched against the commands the bot knows: for Telegram's
private chat and desk, and the console, which takes the same ``/word`` commands.

Telegram's clients mark ``/word`` as a command by its ASCII run alone, so ``/exporẗ`` (a
combining diaeresis on the ``t``) or ``/еxport`` (a Cyrillic ``е``) reach a handler as if they
were ``/export``. Only a whole first word that spells a known command, in the Bot API's
alphabet, counts; anything else is no command at all and gets the help text.
"""

from __future__ import annotations

import re
from collections.abc import Collection

# The Bot API's command alphabet: "1-32 characters. Can contain only lowercase English
# letters, digits and underscores" (BotCommand), typed in any case, optionally addressed to
# a bot as /word@botname. Explicit ranges: \w would admit every script's letters.
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?")


def command_word(
    text: str | None, known: Collection[str], *, bot_username: str | None = None
) -> str | None:
    """The known command that ``text`` begins with, lower-cased, or None.

    ``/word@otherbot`` is another bot's, so None when ``bot_username`` is given and differs.
    """
    words = (text or "").split(maxsplit=1)
    if not words:
        return None
    match = _COMMAND.fullmatch(words[0])
    if match is None:
        return None
    word, addressee = match[1].lower(), match[2]
    if addressee and bot_username and addressee.lower() != bot_username.lower():
        return None
    return word if word in known else None
