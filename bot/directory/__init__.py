"""The SQL directory of members: verified phone links, role grants and the audit log."""

from bot.directory.directory import AuditEntry, Directory, PhoneLink, RecordOutcome
from bot.directory.engine import DirectoryConfigError, create_directory_engine

__all__ = [
    "AuditEntry",
    "Directory",
    "DirectoryConfigError",
    "PhoneLink",
    "RecordOutcome",
    "create_directory_engine",
]
