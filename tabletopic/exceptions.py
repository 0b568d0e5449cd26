"""Every error tabletopic raises on purpose.

    TabletopicError
    ├── ConfigError            bad configuration: names the key; exit code 2, before anything connects
    ├── RecordError            one record could not be decoded: names topic, partition, offset and reason
    ├── SchemaError            a field whose type or name a table cannot hold: names the field
    ├── OffsetsError           offsets that must only go up did not
    ├── CommitError            a commit could not be made within its retry budget (retryable later)
    │   └── PermanentFault     a commit refused for a reason no retry fixes (credentials, a missing bucket)
    ├── SourceUnavailable      a service records depend on (the schema registry) did not answer: retry later
    └── AuditError             the audit could not run (not: the audit found a difference)
"""

from __future__ import annotations


class TabletopicError(Exception):
    """Root of tabletopic's own errors."""


class ConfigError(TabletopicError):
    """The configuration is invalid; `key` is the dotted path of the offending setting."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config error: {key}: {reason}")
        self.key = key
        self.reason = reason


class RecordError(TabletopicError):
    """A record that cannot be turned into a row."""

    def __init__(self, topic: str, partition: int, offset: int, reason: str) -> None:
        super().__init__(f"bad record at {topic}/{partition}@{offset}: {reason}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason


class SchemaError(TabletopicError):
    """A field that cannot become an Iceberg column; `field` is its dotted path."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class OffsetsError(TabletopicError):
    """Offsets went backwards where they must only go up."""


class CommitError(TabletopicError):
    """A table commit did not land within its retry budget."""


class PermanentFault(CommitError):
    """A commit refused for a reason no retry can fix: the table halts with `reason` (a short code) and `fix`."""

    def __init__(self, table: str, reason: str, fix: str, error: str) -> None:
        super().__init__(f"{table}: {reason}: {error}")
        self.table = table
        self.reason = reason
        self.fix = fix
        self.error = error


class SourceUnavailable(TabletopicError):
    """Records could not be decoded for want of a service, not for anything in them: never a dead letter."""


class AuditError(TabletopicError):
    """The audit could not be carried out."""
