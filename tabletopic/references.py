"""`${env:VAR}` and `${file:PATH}` in config values: secrets stay out of the config file.

A value may hold references anywhere (`"Bearer ${env:TOKEN}"`); `$${` stands for a literal `${`.
A file's content loses one trailing newline, as Kubernetes Secret files and `echo` leave one.
Every resolved value is returned beside the data (with the reference it came from), so the logs
can mask it wherever it shows up and errors can name its source instead of showing it.

`${file:}` reads only a regular file of at most 64 KiB inside an allowed folder, never under
/proc, /sys or /dev: a config value must not turn into `/proc/self/environ` (every variable of
the process) or a device. The allowed folders: `TABLETOPIC_SECRET_DIRS` (separated by `:`), else
/etc/tabletopic (the chart mounts its Secret files under /etc/tabletopic/secrets), /run/secrets,
/var/run/secrets, and the config file's own folder.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tabletopic.exceptions import ConfigError

_REFERENCE = re.compile(r"\$(\$?)\{(env|file):([^}]*)\}")

SECRET_DIRS_ENV = "TABLETOPIC_SECRET_DIRS"
DEFAULT_SECRET_DIRS = ("/etc/tabletopic", "/run/secrets", "/var/run/secrets")
# Kernel and device trees: their "files" are views of the process or the machine, never a secret someone put there.
NEVER_READ = ("/proc", "/sys", "/dev")
MAX_FILE_BYTES = 64 * 1024


class RefusedFile(OSError):
    """A `${file:}` path tabletopic will not read; the message says why."""


def allowed_dirs(environ: Mapping[str, str], config_file: str | Path | None = None) -> list[Path]:
    """Where `${file:}` may read: the variable's folders if set, else the defaults and the config file's folder."""
    given = environ.get(SECRET_DIRS_ENV)
    if given is not None:
        return [Path(d) for d in given.split(":") if d.strip()]
    dirs = [Path(d) for d in DEFAULT_SECRET_DIRS]
    if config_file is not None:
        dirs.append(Path(config_file).absolute().parent)
    return dirs


def read_secret_file(path: str, allowed: Sequence[Path]) -> str:
    """The text of `path` if it is a regular file of at most MAX_FILE_BYTES under one of `allowed` (symbolic
    links followed, as Kubernetes mounts Secret files through them); else RefusedFile."""
    real = Path(os.path.realpath(path))
    if any(real.is_relative_to(root) for root in NEVER_READ):
        raise RefusedFile(f"{real} is under {', '.join(NEVER_READ)}, which hold no secret files")
    roots = [Path(os.path.realpath(d)) for d in allowed]
    if not any(real.is_relative_to(root) for root in roots):
        where = ", ".join(map(str, allowed)) or "none"
        raise RefusedFile(f"outside the folders ${{file:}} may read ({where}; {SECRET_DIRS_ENV} sets them)")
    if not stat.S_ISREG(os.stat(real).st_mode):  # before opening: opening a FIFO or a device can block or act
        raise RefusedFile("not a regular file")
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # replaced in between
            raise RefusedFile("not a regular file")
        content = file.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise RefusedFile(f"larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        return content.decode()
    except UnicodeDecodeError:
        raise RefusedFile("not UTF-8 text") from None


def file_reader(allowed: Sequence[Path]) -> Callable[[str], str]:
    return lambda path: read_secret_file(path, allowed)


def resolve(
    data: Any,
    environ: Mapping[str, str],
    read_file: Callable[[str], str] | None = None,
    key: str = "",
) -> tuple[Any, dict[str, str]]:
    """The data with every reference replaced, and each value that came from a reference, mapped to the
    reference (`${env:NAME}`, `${file:PATH}`). `read_file`: by default, read_secret_file in the default folders."""
    reader = read_file or file_reader(allowed_dirs(environ))
    sources: dict[str, str] = {}

    def substitute(match: re.Match[str]) -> str:
        escaped, kind, name = match.groups()
        if escaped:
            return match.group(0)[1:]
        if kind == "env":
            if name not in environ:
                raise ConfigError(key or "config", f"environment variable {name} (from ${{env:{name}}}) is not set")
            value = environ[name]
        else:
            try:
                value = reader(name)
            except RefusedFile as exc:
                raise ConfigError(key or "config", f"refused ${{file:{name}}}: {exc}") from None
            except OSError as exc:
                raise ConfigError(key or "config", f"cannot read {name} (from ${{file:...}}): {exc.strerror}") from None
            value = value.removesuffix("\n")
        if value:
            sources[value] = f"${{{kind}:{name}}}"
        return value

    if isinstance(data, str):
        return _REFERENCE.sub(substitute, data), sources
    if isinstance(data, Mapping):
        resolved: dict[Any, Any] = {}
        for child_key, value in data.items():
            path = f"{key}.{child_key}" if key else str(child_key)
            resolved[child_key], found = resolve(value, environ, reader, path)
            sources.update(found)
        return resolved, sources
    if isinstance(data, list):
        items = []
        for index, value in enumerate(data):
            item, found = resolve(value, environ, reader, f"{key}[{index}]")
            items.append(item)
            sources.update(found)
        return items, sources
    return data, sources
