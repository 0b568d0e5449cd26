"""The exit codes of tabletopic's processes: the service, its supervisor and the command line."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    BAD_RECORD = 1
    CONFIG = 2
    SHUTDOWN_TIMEOUT = 3
    COMMIT_FAILED = 4
    # An unexpected error (Python's own exit code for it, 1, would read as "bad record"): restartable.
    CRASHED = 70

    @property
    def meaning(self) -> str:
        return MEANINGS[self]


# What each code tells the operator (run --help lists them).
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "stopped cleanly (SIGTERM, Ctrl-C); every record read is committed",
    ExitCode.BAD_RECORD: "a bad record under errors: fail; the good records before it are committed",
    ExitCode.CONFIG: "the config or a flag is wrong (one line names it): restarting cannot help",
    ExitCode.SHUTDOWN_TIMEOUT: "the clean stop overran shutdown_timeout_seconds; the next start resumes",
    ExitCode.COMMIT_FAILED: "the final commit kept failing past commit.retry_deadline_seconds; the next start resumes",
    ExitCode.CRASHED: "an unexpected error (service.crashed in the log); the pool restarts such a worker",
}
