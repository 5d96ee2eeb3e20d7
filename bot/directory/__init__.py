"""The SQL directory of members: verified phone links, role grants and the audit log."""

from bot.directory.directory import (
    AuditEntry,
    Directory,
    GrantOutcome,
    PhoneLink,
    RecordOutcome,
    Stats,
)
from bot.directory.engine import DirectoryConfigError, create_directory_engine
from bot.directory.facade import AsyncDirectory

__all__ = [
    "AsyncDirectory",
    "AuditEntry",
    "Directory",
    "DirectoryConfigError",
    "GrantOutcome",
    "PhoneLink",
    "RecordOutcome",
    "Stats",
    "create_directory_engine",
]
