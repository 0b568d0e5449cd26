"""A pydantic validation error as a ConfigError: the dotted key, and a reason in the config's own words
(with the nearest known key for a misspelt one)."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tabletopic.exceptions import ConfigError

_EXPECTED = {
    "int": "an integer", "float": "a number", "bool": "true or false", "string": "a string", "list": "a list",
    "dict": "a mapping", "dataclass": "a mapping", "model": "a mapping",
}


def config_error_of(exc: ValidationError, root: type, prefix: str) -> ConfigError:
    """The first error pydantic found, as a ConfigError; `root` is the dataclass validated, `prefix` its key."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    return ConfigError(key_of(loc, prefix), _reason(error, root, loc))


def key_of(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """("tables", 0, "format") -> "tables[0].format"."""
    key = prefix
    for part in loc:
        if part == "[key]":  # pydantic's mark of a mapping's key (after the key itself)
            continue
        if isinstance(part, int) and not isinstance(part, bool):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key or "config"


def _reason(error: ErrorDetails, root: type, loc: tuple[int | str, ...]) -> str:
    kind, given, context = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing" or kind == "missing_argument":
        return "required"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        nearest = difflib.get_close_matches(str(loc[-1]), _keys_at(root, loc[:-1]), n=1, cutoff=0.6)
        return f"unknown key (did you mean {nearest[0]!r}?)" if nearest else "unknown key"
    if kind == "literal_error":
        choices = str(context.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"expected one of {choices}, got {given!r}"
    if kind == "greater_than":
        return f"must be above {context['gt']:g}"
    if kind == "greater_than_equal":
        return f"must be {context['ge']:g} or more"
    if kind == "less_than_equal":
        return f"must be {context['le']:g} or less"
    for stem, expected in _EXPECTED.items():
        if kind.startswith(f"{stem}_"):
            return f"expected {expected}, got {given!r}"
    return f"{error['msg']} (got {given!r})"


def _keys_at(root: type, loc: tuple[int | str, ...]) -> list[str]:
    """The keys the dataclass at `loc` (under `root`) knows; none when no dataclass lies there."""
    kind: Any = root
    for part in loc:
        kind = _unwrapped(kind)
        if isinstance(part, int):
            args = typing.get_args(kind)
            kind = args[0] if args else None
        elif dataclasses.is_dataclass(kind):
            kind = typing.get_type_hints(kind).get(part)
        else:
            return []
    kind = _unwrapped(kind)
    if not dataclasses.is_dataclass(kind):
        return []
    return [f.name for f in dataclasses.fields(kind) if f.init]


def _unwrapped(kind: Any) -> Any:
    """X from `X | None` and from Annotated[X, ...]."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind
