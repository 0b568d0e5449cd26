"""Avro bodies of one writer schema → one Arrow table, in native code.

The bodies of a batch are framed as an in-memory Avro object container file (the header with
the writer schema, then one block holding them all) and read by polars-avro's native reader
straight into Arrow batches (without polars itself, see _native_source): about 0.5 µs a
record against 10-20 for fastavro's per-record reader and the Arrow build after it. Only
schemas whose types this path is proven to give exactly as the per-record path does are taken
(tests/unit/decode/test_avro_batch.py compares them), and only batches whose every body is
exactly one record of its schema (avro_framing.py: the reader trusts the block's framing, and
spins forever on a body with bytes to spare); anything else, and any batch the reader refuses
(a record that is not what its schema says), goes the per-record way, which finds and names
the bad records.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from tabletopic.decode.avro_framing import check_block
from tabletopic.decode.avro_limits import may_be_empty
from tabletopic.decode.wire import HEADER, MAGIC

Longs = npt.NDArray[np.int64]

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
    return _container(schema_json, b"".join(bodies), len(bodies))


def _container(schema_json: str, block: bytes, count: int) -> bytes:
    sync = os.urandom(16)
    header = (_MAGIC + _long(2) + _string(b"avro.schema") + _string(schema_json.encode())
              + _string(b"avro.codec") + _string(b"null") + _long(0) + sync)
    return b"".join((header, _long(count), _long(len(block)), block, sync))


@dataclass(frozen=True)
class Framed:
    """A batch's values laid end to end, every one in the Confluent wire format: where each starts, its
    size and its schema id. Found with a few numpy calls instead of a Python step per value."""

    data: npt.NDArray[np.uint8]
    starts: Longs
    lengths: Longs
    schema_ids: Longs

    def bodies(self, rows: Longs | None = None) -> tuple[bytes, Longs]:
        """The bodies (the values without their headers) of `rows` (all when None) laid end to end, and their sizes."""
        if rows is None:
            keep = np.ones(self.data.size, dtype=bool)
            for k in range(HEADER.size):
                keep[self.starts + k] = False
            return self.data[keep].tobytes(), self.lengths - HEADER.size
        sizes = self.lengths[rows] - HEADER.size
        ends = np.cumsum(sizes)
        # byte j of the block is byte j - (where its body starts in the block) + (where it starts in data)
        shift = np.repeat(self.starts[rows] + HEADER.size - (ends - sizes), sizes)
        return self.data[np.arange(int(ends[-1]) if ends.size else 0) + shift].tobytes(), sizes


def frames(values: Sequence[bytes | None]) -> Framed | None:
    """The values as Framed; None if any is null, too short for the header or has another magic byte."""
    if not values or None in values:
        return None
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))  # type: ignore[arg-type]
    if int(lengths.min()) < HEADER.size:
        return None
    data = np.frombuffer(b"".join(values), dtype=np.uint8)  # type: ignore[arg-type]
    starts = np.cumsum(lengths) - lengths
    if (data[starts] != MAGIC).any():
        return None
    ids = np.zeros(len(values), dtype=np.int64)
    for k in range(1, HEADER.size):  # 4 bytes, big-endian
        ids = (ids << 8) | data[starts + k]
    return Framed(data, starts, lengths, ids)


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
    return read_block(schema_json, writer, b"".join(bodies),
                      np.fromiter(map(len, bodies), dtype=np.int64, count=len(bodies)))


def read_block(schema_json: str, writer: Any, block: bytes, lengths: Longs) -> pa.Table:
    """read_batch of bodies laid end to end in `block`, `lengths` their sizes."""
    check_block(writer, block, lengths)
    table = _read_container(_container(schema_json, block, len(lengths)), len(lengths))
    if table.num_rows != len(lengths):
        raise ValueError(f"read {table.num_rows} records of {len(lengths)}")
    return table


def _read_container(data: bytes, count: int) -> pa.Table:
    """The records of an Avro container file, read by polars-avro's native reader straight into Arrow
    (its own types: 32-bit strings and lists, timestamps in the zone "+00:00"; conform_table makes them
    the table's)."""
    source = _native_source()
    if source is None:
        import polars_avro

        return polars_avro.read_avro(io.BytesIO(data)).to_arrow()
    reader = source([lambda: contextlib.nullcontext(io.BytesIO(data))], False, False)  # strict, utf8_view: as read_avro
    return pa.Table.from_batches([pa.record_batch(batch) for batch in reader.batch_iter(count, None)])


@functools.cache
def _native_source() -> Any | None:
    """polars-avro's native reader (`_avro_rs.AvroSource`), loaded without its package: the package
    imports polars (~30 MiB more per process, and its own allocator and threads) only to wrap the
    Arrow batches this reader yields. None if this polars-avro has no such reader: then its public
    read_avro, through polars."""
    loaded = sys.modules.get(_NATIVE)
    if loaded is None:
        package = importlib.util.find_spec("polars_avro")
        folder = Path(package.origin).parent if package is not None and package.origin else None
        found = [folder / f"_avro_rs{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES] if folder else []
        found = [path for path in found if path.is_file()]
        spec = importlib.util.spec_from_file_location(_NATIVE, found[0]) if found else None
        if spec is None or spec.loader is None:
            return None
        loaded = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(loaded)
        except ImportError:
            return None
        sys.modules[_NATIVE] = loaded  # an `import polars_avro` later finds it (a native module loads once)
    return getattr(loaded, "AvroSource", None)


_NATIVE = "polars_avro._avro_rs"


def schema_json(text: str) -> str:
    """The registry's schema text, compacted (the container header carries it)."""
    return json.dumps(json.loads(text), separators=(",", ":"))
