"""``python -m bot``, as older scripts and notes call it: the shell's ``verifybot`` command.

An entry script only; no module imports it, so the core still depends on nothing outside it.
"""

from verifybot.cli import main

main()
