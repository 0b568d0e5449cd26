"""Hostile payloads, one file each: `<format>/<reason>--<what>.<ext>`, where `<reason>` is the dead-letter
reason code the default table settings give the payload (drift `evolve`, errors `dlq`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

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


def field_names(data_type: pa.DataType) -> list[str]:
    """Every field name in a (struct) type, at any depth, list items included: what a check of names must see."""
    if pa.types.is_struct(data_type):
        fields = [data_type.field(i) for i in range(data_type.num_fields)]
        return [name for f in fields for name in [f.name, *field_names(f.type)]]
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return field_names(data_type.value_type)
    return []
