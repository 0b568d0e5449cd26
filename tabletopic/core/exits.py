"""The exit codes of tabletopic's processes: the service, its supervisor and the command line."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    BAD_RECORD = 1  # a bad record under `errors: fail` (the good records before it are committed)
    CONFIG = 2  # the config (or a flag) is wrong: restarting cannot help
    SHUTDOWN_TIMEOUT = 3  # the clean stop overran shutdown_timeout_seconds
    COMMIT_FAILED = 4  # the last flush on the way out did not commit
    # An unexpected error (Python's own exit code for it, 1, would read as "bad record"): restartable.
    CRASHED = 70

