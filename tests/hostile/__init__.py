"""Hostile payloads, one file each: `<format>/<reason>--<what>.<ext>`, where `<reason>` is the dead-letter
reason code the default table settings give the payload (drift `evolve`, errors `dlq`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Payload:
    name: str  # the file's stem: `<reason>--<what>`
    reason: str
    value: bytes


def payloads(kind: str) -> list[Payload]:
    """Every payload of one format folder (`json`, ...), sorted by name."""
    found = []
    for path in sorted((HERE / kind).iterdir()):
        reason, _, _ = path.stem.partition("--")
        found.append(Payload(path.stem, reason, path.read_bytes()))
    return found
