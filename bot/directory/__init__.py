"""The SQL directory of members: verified phone links, role grants and the audit log."""

from bot.directory.directory import (
    AuditEntry,
    Directory,
    GrantOutcome,
    Group,
    PhoneLink,
    PolicyChange,
    RecordOutcome,
    Stats,
    StoredPolicy,
)
from bot.directory.engine import DirectoryConfigError, create_directory_engine
from bot.directory.facade import AsyncDirectory

__all__ = [
    "AsyncDirectory",
    "AuditEntry",
    "Directory",
    "DirectoryConfigError",
    "GrantOutcome",
    "Group",
    "PhoneLink",
    "PolicyChange",
    "RecordOutcome",
    "Stats",
    "StoredPolicy",
    "create_directory_engine",
]
