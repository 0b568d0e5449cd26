"""Catalog calls made while records are ingested, told apart from the records by where they failed.

Whatever a catalog call raises (a lost connection, a malformed answer parsed into a ValueError or a
KeyError, a botocore error) is the service's doing, never a record's: it is raised again as
CatalogCallFailed, the original kept as `__cause__`, so that it is never turned into a dead letter
and commit/faults.py can still tell a permanent cause (refused credentials, a missing bucket) from
an outage. What a record can make fail (schema planning, conversion, validation) is done outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tabletopic.exceptions import SourceUnavailable


class CatalogCallFailed(SourceUnavailable):
    """A catalog call failed; `__cause__` is what it raised."""

    def __init__(self, call: str, name: str, cause: BaseException) -> None:
        super().__init__(f"catalog {call} of {name} failed: {type(cause).__name__}: {cause}")
        self.call = call


@contextmanager
def catalog_call(call: str, name: str, passes: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Raise what the block raises as CatalogCallFailed, except `passes` (handled by the caller)."""
    try:
        yield
    except passes:
        raise
    except Exception as exc:
        raise CatalogCallFailed(call, name, exc) from exc
