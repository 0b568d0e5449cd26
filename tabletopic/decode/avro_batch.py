"""Avro bodies of one writer schema → one Arrow table, in native code.

The bodies of a batch are framed as an in-memory Avro object container file (the header with
the writer schema, then one block holding them all) and read by polars-avro: about 1 µs a
record against 10-20 for fastavro's per-record reader and the Arrow build after it. Only
schemas whose types this path is proven to give exactly as the per-record path does are taken
(tests/unit/decode/test_avro_batch.py compares them), and only batches whose every body is
exactly one record of its schema (avro_framing.py: the reader trusts the block's framing, and
spins forever on a body with bytes to spare); anything else, and any batch the reader refuses
(a record that is not what its schema says), goes the per-record way, which finds and names
the bad records.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from tabletopic.decode.avro_framing import check_framing
from tabletopic.decode.avro_limits import may_be_empty

_MAGIC = b"Obj\x01"
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})
_LOGICAL = frozenset({"timestamp-millis", "timestamp-micros", "date"})


def _long(n: int) -> bytes:
    """Avro's zig-zag varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(text: bytes) -> bytes:
    return _long(len(text)) + text


def container(schema_json: str, bodies: Sequence[bytes]) -> bytes:
    """An Avro object container file with `bodies` as the records of one uncompressed block."""
    sync = os.urandom(16)
    header = (_MAGIC + _long(2) + _string(b"avro.schema") + _string(schema_json.encode())
              + _string(b"avro.codec") + _string(b"null") + _long(0) + sync)
    data = b"".join(bodies)
    return b"".join((header, _long(len(bodies)), _long(len(data)), data, sync))


def batchable(schema: Any) -> bool:
    """Whether every type in a (fastavro-parsed) writer schema is one the batch path reads exactly."""
    if isinstance(schema, str):
        return schema in _PRIMITIVES
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return len(branches) == 1 and len(schema) == 2 and batchable(branches[0])
    if not isinstance(schema, dict):
        return False
    logical = schema.get("logicalType")
    if logical is not None:
        return logical in _LOGICAL and schema.get("type") in ("int", "long")
    kind = schema.get("type")
    if kind == "record":
        return all(batchable(field["type"]) for field in schema["fields"])
    if kind == "array":
        # Items that may take no bytes let a corrupt count make the reader loop for ~2**63 items.
        return batchable(schema["items"]) and not may_be_empty(schema["items"])
    if kind in ("map", "enum", "fixed"):
        return False
    return batchable(kind)  # {"type": "string"} and the like


def read_batch(schema_json: str, writer: Any, bodies: Sequence[bytes]) -> pa.Table:
    """The records as Arrow (polars' types: large strings and lists, timestamps as written);
    raises avro_framing.Unframed unless each body is exactly one record of `writer` (the parsed
    schema of `schema_json`), and any error if the reader refuses the batch or finds a different
    number of records."""
    import polars_avro

    check_framing(writer, bodies)

    table = polars_avro.read_avro(io.BytesIO(container(schema_json, bodies))).to_arrow()
    if table.num_rows != len(bodies):
        raise ValueError(f"read {table.num_rows} records of {len(bodies)}")
    return table


def schema_json(text: str) -> str:
    """The registry's schema text, compacted (the container header carries it)."""
    return json.dumps(json.loads(text), separators=(",", ":"))
