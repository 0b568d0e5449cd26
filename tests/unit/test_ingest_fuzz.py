"""Fuzz proof of issue 15: random and hostile bytes through TableSink.ingest, for every format, against a
real SQLite catalog. The only outcomes are rows and dead letters: never an exception out of ingest,
every record exactly once (its offset in the rows or in the dead letters, a good record's value on its
own row), and the table still takes a commit afterwards.

Each format's run is one hypothesis property in a spawned process (tests/unit/decode/deadline.py):
a parser that spins or crashes the process fails the test instead of hanging or killing the run.
"""

from __future__ import annotations

import io
import itertools
import json
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.decode.avro import WriterSchemas
from tabletopic.sink import TableSink
from tests.hostile import payloads
from tests.unit.decode.deadline import within
from tests.unit.decode.test_avro_batch import Registry

EXAMPLES = 25  # per format; each example creates a table and commits twice
DEADLINE_S = 300  # for a whole format's run, on a loaded machine

# --- values ------------------------------------------------------------------------------------

HOSTILE_JSON = [p.value for p in payloads("json")]  # tests/hostile: deep nesting, bad names, long integers

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
_names = st.one_of(st.sampled_from(["a", "b", "n", "s", "A", "", "a.b", "x/y", "\x00", "\x1b[2J", "é"]),
                   st.text(max_size=6))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(_names, inner, max_size=4)),
                     max_leaves=12)


def _mutated(value: bytes, data: st.DataObject) -> bytes:
    """`value` cut short, or with one byte replaced."""
    if not value:
        return value
    at = data.draw(st.integers(0, len(value) - 1))
    if data.draw(st.booleans()):
        return value[:at]
    return value[:at] + bytes([data.draw(st.integers(0, 255))]) + value[at + 1:]


# A good JSON record carries its own offset in `n`, so a row can be checked to be its record's.
def _json_values(data: st.DataObject, offsets: list[int]) -> list[bytes | None]:
    values: list[bytes | None] = []
    for offset in offsets:
        kind = data.draw(st.sampled_from(["good", "good", "random_json", "hostile", "bytes", "mutated", "none"]))
        if kind == "good":
            extra = data.draw(st.dictionaries(st.sampled_from(["a", "b", "s"]), _scalars, max_size=2))
            values.append(json.dumps({**extra, "n": offset}).encode())
        elif kind == "random_json":
            values.append(json.dumps(data.draw(_json)).encode())
        elif kind == "hostile":
            values.append(data.draw(st.sampled_from(HOSTILE_JSON)))
        elif kind == "bytes":
            values.append(data.draw(st.binary(max_size=40)))
        elif kind == "mutated":
            values.append(_mutated(json.dumps({"n": offset, "s": {"x": [1, 2]}}).encode(), data))
        else:
            values.append(None)
    return values


EVENT = {"type": "record", "name": "Event", "fields": [{"name": "n", "type": "long"},
                                                         {"name": "s", "type": ["null", "string"]}]}
EVENT_V2 = {**EVENT, "fields": [*EVENT["fields"], {"name": "tags", "type": {"type": "array", "items": "string"}}]}
# Legal Avro the table cannot take as it is (a decimal above 38 digits, a map of nulls).
WIDE_DECIMAL = {"type": "record", "name": "Wide", "fields": [
    {"name": "n", "type": "long"},
    {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 2}}]}
NULL_ITEMS = {"type": "record", "name": "Nulls", "fields": [
    {"name": "n", "type": "long"}, {"name": "xs", "type": {"type": "array", "items": "null"}}]}
SCHEMAS = {1: EVENT, 2: EVENT_V2, 3: WIDE_DECIMAL, 4: NULL_ITEMS}
UNKNOWN_ID = 77


def _wire(schema_id: int, value: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(SCHEMAS[schema_id]), value)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def _avro_values(data: st.DataObject, offsets: list[int]) -> list[bytes | None]:
    values: list[bytes | None] = []
    for offset in offsets:
        kind = data.draw(st.sampled_from(["v1", "v1", "v2", "wide", "nulls", "unknown", "bytes", "mutated", "none"]))
        text = data.draw(st.one_of(st.none(), st.text(max_size=6)))
        if kind == "v1":
            values.append(_wire(1, {"n": offset, "s": text}))
        elif kind == "v2":
            values.append(_wire(2, {"n": offset, "s": text, "tags": data.draw(st.lists(st.text(max_size=3),
                                                                                       max_size=3))}))
        elif kind == "wide":
            values.append(_wire(3, {"n": offset, "d": b"\x01\x00"}))
        elif kind == "nulls":  # a few bytes declaring many items that take no bytes
            values.append(struct.pack(">bI", 0, 4) + b"\x02" + b"\xc0\x9a\x0c" + b"\x00")
        elif kind == "unknown":
            values.append(struct.pack(">bI", 0, UNKNOWN_ID) + b"\x02")
        elif kind == "bytes":
            values.append(data.draw(st.binary(max_size=20)))
        elif kind == "mutated":
            values.append(_mutated(_wire(1, {"n": offset, "s": text}), data))
        else:
            values.append(None)
    return values


def _raw_values(data: st.DataObject, offsets: list[int]) -> list[bytes | None]:
    return [data.draw(st.one_of(st.none(), st.binary(max_size=30), st.sampled_from(HOSTILE_JSON)))
            for _ in offsets]


VALUES = {"json": _json_values, "avro": _avro_values, "raw": _raw_values}

# --- the property ------------------------------------------------------------------------------


def _chunk(offsets: list[int], values: list[bytes | None], data: st.DataObject) -> RecordChunk:
    keys = [data.draw(st.one_of(st.none(), st.binary(max_size=4))) for _ in offsets]
    return RecordChunk("t", 0, offsets, keys, values, [0] * len(offsets), [None] * len(offsets))


def _buffered(sink: TableSink) -> tuple[list[int], list[int]]:
    """Offsets of the buffered rows and of the buffered dead letters."""
    def offsets(buffer: Any) -> list[int]:
        found: list[int] = []
        for held in buffer.partitions.values():
            rows = held.rows()
            if rows.num_rows:
                found += rows["_kafka_offset"].to_pylist()
        return found
    return offsets(sink.buffer), offsets(sink.dead_letters)


def run_fuzz(fmt: str, workdir: str, examples: int) -> int:
    """The property for one format, `examples` times; returns how many records went through."""
    catalog = SqlCatalog("fuzz", uri=f"sqlite:///{workdir}/catalog.db", warehouse=f"file://{workdir}")
    writer_schemas = WriterSchemas(Registry(SCHEMAS)) if fmt == "avro" else None  # type: ignore[arg-type]
    tables = itertools.count()
    seen = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def ingest_anything(data: st.DataObject) -> None:
        spec = TableConfig(table=f"ns.t{next(tables)}", topic="t", format=fmt,  # type: ignore[arg-type]
                           max_record_bytes=30_000, max_new_columns_per_batch=8, max_columns=20)
        sink = TableSink(spec, catalog, "g", "w", RetryPolicy(), writer_schemas=writer_schemas)
        sizes = data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=2))
        first = 0
        expected: list[int] = []
        for size in sizes:  # the first chunk creates the table, a second one meets it
            offsets = list(range(first, first + size))
            sink.ingest(_chunk(offsets, VALUES[fmt](data, offsets), data), now=0.0)
            expected += offsets
            first += size + data.draw(st.integers(0, 2))  # gaps are legal
        rows, letters = _buffered(sink)
        assert sorted(rows + letters) == expected, "each record once: a row or a dead letter"
        if fmt == "json":
            for held in sink.buffer.partitions.values():
                table = held.rows()
                if "n" in table.column_names:
                    for n, offset in zip(table["n"].to_pylist(), table["_kafka_offset"].to_pylist(), strict=True):
                        assert n is None or n == offset, f"the value of record {n} on the row of {offset}"
        assert sink.flush() is not None
        # The table still takes a commit, from this writer and from a new one.
        good = {"json": b'{"n": -1}', "avro": _wire(1, {"n": -1, "s": None}), "raw": b"x"}[fmt]
        sink.ingest(RecordChunk("t", 0, [first], [None], [good], [0], [None]), now=0.0)
        assert sink.flush().committed == {("t", 0): first + 1}  # type: ignore[union-attr]
        again = TableSink(spec, catalog, "g", "w2", RetryPolicy(), writer_schemas=writer_schemas)
        again.ingest(RecordChunk("t", 0, [first + 1], [None], [good], [0], [None]), now=0.0)
        assert again.flush().committed == {("t", 0): first + 2}  # type: ignore[union-attr]
        catalog.load_table(spec.table).scan().to_arrow()  # and reads back
        seen[0] += len(expected)

    ingest_anything()
    return seen[0]


@pytest.mark.parametrize("fmt", ["json", "avro", "raw"])
def test_anything_ingested_becomes_rows_or_dead_letters_and_the_table_takes_commits(fmt, tmp_path):
    assert within(DEADLINE_S, run_fuzz, fmt, str(tmp_path), EXAMPLES) > 0

