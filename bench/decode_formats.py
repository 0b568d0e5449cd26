"""Decoding alone (issue 20): records/s per core of each value format's decoder on the same events, in process.

    .venv/bin/python -m bench.decode_formats [--records 200000] [--chunk 10000] [--repetitions 5]

bench/dataset.py's page-view events, encoded four ways with the same fields: schemaless JSON, JSON under
a registered JSON Schema, Avro and Protobuf, the last three in the Confluent wire format, their schemas
registered in confluent-kafka's in-process registry (`mock://`) behind tabletopic's own registry client, so
nothing needs a service. The events are cut into chunks of `--chunk` records (the writer's default
`batch_size`) and each decoder path decodes every chunk, timed by the process's CPU time:

- avro batch: `AvroDecoder.decode` (avro_batch.py's native reader), as the writer calls it;
- avro per-record: `AvroDecoder._decode_each` (fastavro, then `pa.Table.from_pylist`);
- protobuf batch: `ProtobufDecoder.decode` (protobuf_batch.py, ptars), as the writer calls it;
- protobuf per-record: `ProtobufDecoder._decode_each` (upb messages, then `pa.Table.from_pylist`);
- json: `JsonDecoder.decode` on the table's columns (pyarrow.json), as the writer calls it;
- json-schema (validated): `JsonSchemaDecoder.decode` (`json_schema: true`): the same JSON framed with a
  registered JSON Schema's id, each value validated (jsonschema-rs), then read by pyarrow.json.

The paths take turns within each repetition (so a load change on the machine hits them alike); each
figure is the median over the repetitions. The ceiling the issue compares against is Avro's batch path
in the same run: the verdict is protobuf batch / avro batch records per CPU-second (target ≥ 0.7).
Before timing, each batch path is checked to take the chunks (not fall back to its per-record twin)
and the Protobuf rows are checked equal to the per-record path's and to Avro's.

Results: a summary on stdout and JSON in bench/results/decode-<time>.json (or `--out`).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka.schema_registry import Schema
from google.protobuf import message_factory

from bench.dataset import AVRO_SCHEMA, JSON_VALUE_SCHEMA, avro_encoder, encode_json, events
from bench.measure import machine
from bench.run import code_version
from tabletopic.core.records import RecordChunk
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, first_writer_schema, writer_arrow_schema
from tabletopic.decode.json import JsonDecoder
from tabletopic.decode.json_schema import JsonSchemaDecoder, JsonSchemas
from tabletopic.decode.json_schema_types import arrow_schema_of
from tabletopic.decode.protobuf import ProtobufDecoder, first_value_schema
from tabletopic.decode.protobuf_schema import ProtobufSchemas
from tabletopic.decode.wire import HEADER, MAGIC, encode_message_indexes
from tabletopic.kafka.registry import SchemaRegistry

TARGET = 0.7

# bench/dataset.py's AVRO_SCHEMA field for field: `referrer` optional (null when unset), `at` a Timestamp.
PAGE_VIEW_PROTO = """syntax = "proto3";
package bench;
import "google/protobuf/timestamp.proto";

message PageView {
  int64 event_id = 1;
  string user_id = 2;
  string session_id = 3;
  string page = 4;
  optional string referrer = 5;
  double amount = 6;
  int32 quantity = 7;
  google.protobuf.Timestamp at = 8;
  message Device {
    string os = 1;
    int32 version = 2;
    string model = 3;
  }
  Device device = 9;
  repeated string tags = 10;
  string user_agent = 11;
  string ip = 12;
}
"""

DecodePath = Callable[[RecordChunk], pa.Table]
_HEADER = struct.Struct(">bI")
# The PageView events as a registered JSON Schema (`json_schema: true`): each value validated, then typed by it.
_NULLABLE_STRING = {"type": ["string", "null"]}
PAGE_VIEW_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
    "required": ["event_id", "user_id", "at"],
    "properties": {
        "event_id": {"type": "integer"}, "user_id": {"type": "string"}, "session_id": {"type": "string"},
        "page": {"type": "string"}, "referrer": _NULLABLE_STRING, "amount": {"type": "number"},
        "quantity": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
        "device": {"type": "object", "properties": {"os": {"type": "string"}, "version": {"type": "integer"},
                                                    "model": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "string"}}, "user_agent": {"type": "string"},
        "ip": {"type": "string"},
    },
}


class Formats:
    """The events in each encoding, and a decoder per format over one in-process registry."""

    def __init__(self, records: int) -> None:
        registry = SchemaRegistry(f"mock://bench-decode-{time.monotonic_ns()}")
        client = registry._client  # confluent-kafka's mock client: registering is not part of tabletopic's API
        avro_id = int(client.register_schema("bench-avro-value", Schema(json.dumps(AVRO_SCHEMA), "AVRO")))
        proto_id = int(client.register_schema("bench-protobuf-value", Schema(PAGE_VIEW_PROTO, "PROTOBUF")))
        json_schema_id = int(client.register_schema("bench-json-schema-value",
                                                    Schema(json.dumps(PAGE_VIEW_JSON_SCHEMA), "JSON")))
        self.proto_schemas = ProtobufSchemas(registry)
        self.writer_schemas = WriterSchemas(registry)
        sample = list(events(records))
        to_avro, to_proto = avro_encoder(avro_id), protobuf_encoder(self.proto_schemas, proto_id)
        self.values: dict[str, list[bytes | None]] = {
            "json": [encode_json(e) for e in sample],
            "avro": [to_avro(e) for e in sample],
            "protobuf": [to_proto(e) for e in sample],
            "json-schema": [_HEADER.pack(0, json_schema_id) + encode_json(e) for e in sample],
        }
        avro_columns = writer_arrow_schema(first_writer_schema(self.writer_schemas, self.values["avro"][:1]), False)
        proto_columns = first_value_schema(self.proto_schemas, self.values["protobuf"][:1], False)
        assert proto_columns is not None
        self.avro = AvroDecoder(self.writer_schemas, avro_columns)
        self.protobuf = ProtobufDecoder(self.proto_schemas, proto_columns)
        self.json = JsonDecoder(JSON_VALUE_SCHEMA)
        self.json_schema = JsonSchemaDecoder(JsonSchemas(registry), arrow_schema_of(PAGE_VIEW_JSON_SCHEMA))

    def bytes_per_record(self) -> dict[str, float]:
        return {fmt: round(sum(len(v or b"") for v in values) / len(values), 1) for fmt, values in self.values.items()}

    def paths(self) -> dict[str, tuple[str, DecodePath]]:
        """Each measured path: the format whose values it reads, and the call that makes a chunk's rows."""
        return {
            "avro batch": ("avro", lambda c: self.avro.decode(c).rows),
            "avro per-record": ("avro", lambda c: self.avro._decode_each(c.values).rows),
            "protobuf batch": ("protobuf", lambda c: self.protobuf.decode(c).rows),
            "protobuf per-record": ("protobuf", lambda c: self.protobuf._decode_each(c.values).rows),
            "json": ("json", lambda c: self.json.decode(c).rows),
            "json-schema (validated)": ("json-schema", lambda c: self.json_schema.decode(c).rows),
        }


def protobuf_encoder(schemas: ProtobufSchemas, schema_id: int) -> Callable[[dict[str, Any]], bytes]:
    """An event as a Protobuf wire-format value (the file's first message, index array `[0]`)."""
    page_view = message_factory.GetMessageClass(schemas.compiled(schema_id).message((0,)))
    header = HEADER.pack(MAGIC, schema_id) + encode_message_indexes((0,))

    def encode(event: dict[str, Any]) -> bytes:
        message = page_view(**{k: v for k, v in event.items() if k not in ("at", "device", "referrer")})
        if event["referrer"] is not None:
            message.referrer = event["referrer"]
        message.at.FromMicroseconds(event["at"])
        message.device.os = event["device"]["os"]
        message.device.version = event["device"]["version"]
        message.device.model = event["device"]["model"]
        return header + message.SerializeToString()

    return encode


def chunks(values: list[bytes | None], size: int) -> Iterator[RecordChunk]:
    for start in range(0, len(values), size):
        part = values[start:start + size]
        n = len(part)
        yield RecordChunk("bench", 0, list(range(start, start + n)), [None] * n, part, [None] * n, [None] * n)


def check(formats: Formats, size: int) -> dict[str, Any]:
    """Every batch path takes the first chunk, and the formats' rows agree; AssertionError otherwise."""
    first = {fmt: next(chunks(values, size)) for fmt, values in formats.values.items()}
    avro_rows = formats.avro._decode_batch(first["avro"].values)
    proto_rows = formats.protobuf._decode_batch(first["protobuf"].values)
    assert avro_rows is not None, "the Avro batch path gave up on the dataset"
    assert proto_rows is not None, "the Protobuf batch path gave up on the dataset"
    proto_each = formats.protobuf._decode_each(first["protobuf"].values)
    assert not proto_each.bad and proto_rows.equals(proto_each.rows), "Protobuf batch rows differ from per-record"
    assert proto_rows.equals(avro_rows.cast(proto_rows.schema)), "Protobuf rows differ from Avro's"
    json_rows = formats.json.decode(first["json"]).rows
    assert json_rows.num_rows == proto_rows.num_rows
    validated = formats.json_schema.decode(first["json-schema"])
    assert not validated.bad, "a JSON Schema value was refused"
    assert validated.rows.select(json_rows.column_names).to_pylist() == json_rows.to_pylist(), \
        "JSON Schema rows differ from schemaless JSON's"
    return {"rows_checked": proto_rows.num_rows, "protobuf_columns": str(proto_rows.schema).splitlines()}


def cpu_seconds(decode: DecodePath, values: list[bytes | None], size: int) -> float:
    gc.collect()
    started = time.process_time()
    rows = 0
    for chunk in chunks(values, size):
        rows += decode(chunk).num_rows
    spent = time.process_time() - started
    assert rows == len(values), f"{rows} rows of {len(values)} records"
    return spent


def measure(formats: Formats, size: int, repetitions: int) -> dict[str, list[float]]:
    paths = formats.paths()
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for repetition in range(repetitions):
        for name, (fmt, decode) in paths.items():
            seconds[name].append(cpu_seconds(decode, formats.values[fmt], size))
        print(f"repetition {repetition + 1}/{repetitions}: "
              + ", ".join(f"{name} {s[-1]:.2f} s" for name, s in seconds.items()), file=sys.stderr, flush=True)
    return seconds


def summary(records: int, seconds: dict[str, list[float]]) -> dict[str, Any]:
    rates = {name: records / statistics.median(s) for name, s in seconds.items()}
    ratios = [avro / proto for avro, proto in zip(seconds["avro batch"], seconds["protobuf batch"], strict=True)]
    ratio = rates["protobuf batch"] / rates["avro batch"]
    return {
        "records_per_cpu_s": {name: round(rate) for name, rate in rates.items()},
        "us_per_record": {name: round(1e6 / rate, 2) for name, rate in rates.items()},
        "cpu_s": {name: [round(x, 3) for x in s] for name, s in seconds.items()},
        "protobuf_to_avro_batch": round(ratio, 3),
        "protobuf_to_avro_batch_per_repetition": [round(r, 3) for r in ratios],
        "protobuf_to_avro_per_record": round(rates["protobuf per-record"] / rates["avro per-record"], 3),
        "target": TARGET,
        "met": ratio >= TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decode_formats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=10_000, help="records per chunk (the writer's batch_size)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC)
    out = args.out or Path(__file__).parent / "results" / f"decode-{stamp:%Y-%m-%dT%H%M%S}.json"
    print(f"encoding {args.records:,} events four ways", file=sys.stderr, flush=True)
    formats = Formats(args.records)
    results: dict[str, Any] = {
        "started": stamp.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.decode_formats", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(), "code_at_start": code_version(),
        "settings": {"records": args.records, "chunk": args.chunk, "repetitions": args.repetitions},
        "bytes_per_record": formats.bytes_per_record(),
        "check": check(formats, args.chunk),
    }
    results.update(summary(args.records, measure(formats, args.chunk, args.repetitions)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\n{args.records:,} records in chunks of {args.chunk:,}, median of {args.repetitions} (CPU time)")
    for name, rate in results["records_per_cpu_s"].items():
        print(f"  {name:20s} {rate:>10,} records/s per core  {results['us_per_record'][name]:6.2f} µs/record")
    print(f"  protobuf / avro (batch): {results['protobuf_to_avro_batch']:.2f}  (target ≥ {TARGET}; per repetition "
          f"{results['protobuf_to_avro_batch_per_repetition']})  "
          f"per-record: {results['protobuf_to_avro_per_record']:.2f}")
    print(f"  bytes/record: {results['bytes_per_record']}\nresults: {out}")
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
