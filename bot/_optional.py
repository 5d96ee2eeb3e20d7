"""Importing a library without the optional extras it loads only because they are installed.

Some libraries import an extra at import time whenever it happens to be installed, for a
feature the bot never uses: structlog loads rich and pygments for its development tracebacks
(2.9 MiB) and greenlet (0.2 MiB); requests loads charset_normalizer to guess the encoding of
a body that declares none (2.6 MiB). Every bot process pays for them (bench/README.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without(*names: str) -> Iterator[None]:
    """Run the block's imports as if ``names`` were not installed; afterwards they import as
    usual (typer's help still uses rich). A name already imported is left alone."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
