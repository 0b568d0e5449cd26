"""One metrics folder per `tabletopic run`, shared by its workers and its maintenance process.

prometheus_client's multiprocess mode keeps each process's values in memory-mapped files in
`PROMETHEUS_MULTIPROC_DIR`; the process that serves /metrics merges them. The variable must be
set before prometheus_client is first imported, and children inherit it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

from tabletopic.exceptions import ConfigError

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare() -> str | None:
    """Set up a fresh folder for this run unless a parent already did; returns it if this process owns it.
    A folder given in the variable is checked first (ConfigError): every file in it becomes a metric."""
    given = os.environ.get(ENV)
    if given:
        problem = unsafe_folder(given)
        if problem is not None:
            raise ConfigError(ENV, f"{given} {problem}; unset it (tabletopic then makes a private folder of its own) "
                                   "or point it at a folder of this user's that only this user can write")
        return None
    folder = tempfile.mkdtemp(prefix="tabletopic-metrics-")
    os.environ[ENV] = folder
    return folder


def unsafe_folder(path: str) -> str | None:
    """Why `path` may not hold this process's metrics files, or None: it must be a real folder (not a
    symbolic link) owned by this user, that no other user may write to."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"cannot be used: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if info.st_uid != os.geteuid():
        return f"is owned by user {info.st_uid}, not by this process's user ({os.geteuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"may be written by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def remove(folder: str | None) -> None:
    """The folder `prepare` made, and the variable naming it: nothing started later in this process (a
    command run in process again) may take a removed folder for its own."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get(ENV) == folder:
            del os.environ[ENV]


def forget(pid: int) -> None:
    """A worker process has exited: its live gauges (lag, buffer, heartbeat) no longer count."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
