"""`${env:VAR}` and `${file:PATH}` in config values: secrets stay out of the config file.

A value may hold references anywhere (`"Bearer ${env:TOKEN}"`); `$${` stands for a literal `${`.
A file's content loses one trailing newline, as Kubernetes Secret files and `echo` leave one.
Every resolved value is returned beside the data, so the logs can mask it wherever it shows up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tabletopic.exceptions import ConfigError

_REFERENCE = re.compile(r"\$(\$?)\{(env|file):([^}]*)\}")


def _read_file(path: str) -> str:
    return Path(path).read_text()


def resolve(
    data: Any,
    environ: Mapping[str, str],
    read_file: Callable[[str], str] = _read_file,
    key: str = "",
) -> tuple[Any, set[str]]:
    """The data with every reference replaced, and the set of values that came from references."""
    secrets: set[str] = set()

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
                value = read_file(name)
            except OSError as exc:
                raise ConfigError(key or "config", f"cannot read {name} (from ${{file:...}}): {exc.strerror}") from None
            value = value.removesuffix("\n")
        if value:
            secrets.add(value)
        return value

    if isinstance(data, str):
        return _REFERENCE.sub(substitute, data), secrets
    if isinstance(data, Mapping):
        resolved: dict[Any, Any] = {}
        for child_key, value in data.items():
            path = f"{key}.{child_key}" if key else str(child_key)
            resolved[child_key], found = resolve(value, environ, read_file, path)
            secrets |= found
        return resolved, secrets
    if isinstance(data, list):
        items = []
        for index, value in enumerate(data):
            item, found = resolve(value, environ, read_file, f"{key}[{index}]")
            items.append(item)
            secrets |= found
        return items, secrets
    return data, secrets
