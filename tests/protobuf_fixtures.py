"""The Protobuf records of the issue-20 tests (integration, engines, kill -9): a .proto importing another
registered .proto, three versions of one message interleaved by record number, the producer side (message
classes compiled from the same texts, Confluent framing) and the rows the table should hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from tabletopic.decode.protobuf_schema import compile_files
from tabletopic.decode.wire import encode_message_indexes

COMMON = '''syntax = "proto3";
package acme.common;
message Money { string currency = 1; int64 units = 2; }
enum Status { STATUS_UNKNOWN = 0; STATUS_OPEN = 1; STATUS_DONE = 2; }
'''
V1_FIELDS = '''  int64 id = 1;
  acme.common.Money total = 2;
  acme.common.Status status = 3;
  google.protobuf.Timestamp at = 4;
  repeated string tags = 5;
  optional string note = 6;
'''
V2_FIELDS = V1_FIELDS + "  double score = 7;\n"
V3_FIELDS = V2_FIELDS + '''  message Line { string sku = 1; int32 qty = 2; }
  repeated Line lines = 8;
  map<string, int64> attrs = 9;
  Line first = 10;
'''
START = datetime(2026, 3, 1, tzinfo=UTC)


def order_proto(fields: str) -> str:
    return f'''syntax = "proto3";
package acme.orders;
import "acme/common.proto";
import "google/protobuf/timestamp.proto";
message Order {{
{fields}}}
'''


VERSIONS = [order_proto(V1_FIELDS), order_proto(V2_FIELDS), order_proto(V3_FIELDS)]


def expected(i: int) -> dict[str, Any]:
    """Record i as the table should hold it; it is written with version i % 3 (so v1 has no score, ...)."""
    version = i % 3
    row: dict[str, Any] = {
        "id": i, "total": {"currency": "EUR", "units": i * 10} if i % 5 else None,
        "status": ["STATUS_UNKNOWN", "STATUS_OPEN", "STATUS_DONE"][i % 3],
        "at": START + timedelta(microseconds=i * 1001), "tags": [f"t{i % 7}"] * (i % 3),
        # `lines` of a record without it stays null, never [] (catalog/pyiceberg_private._NullKeepingProjection).
        "note": None if i % 4 else f"n{i}", "score": None, "lines": None, "attrs": None, "first": None,
    }
    if i % 50 == 0:
        row["tags"] = [f"t{k}" for k in range(5)]  # past test_protobuf's max_items: dead letters, replayed
    if version >= 1:
        row["score"] = i / 8
    if version == 2:
        row["lines"] = [{"sku": f"s{k}", "qty": k} for k in range(i % 3)]
        row["attrs"] = [("a", i), ("b", -i)] if i % 2 else []
        row["first"] = {"sku": "first", "qty": i % 100}
    return row


def serialized(classes: list[type[Message]], i: int) -> bytes:
    row = expected(i)
    message = classes[i % 3](id=i, status=i % 3, tags=row["tags"])
    if row["total"] is not None:
        message.total.currency, message.total.units = "EUR", i * 10
    message.at.FromDatetime(row["at"])
    if row["note"] is not None:
        message.note = row["note"]
    if i % 3 >= 1:
        message.score = row["score"]
    if i % 3 == 2:
        for line in row["lines"]:
            message.lines.add(**line)
        message.attrs.update(dict(row["attrs"]))
        message.first.sku, message.first.qty = "first", i % 100
    return message.SerializeToString()


def register_versions(client: SchemaRegistryClient, topic: str) -> tuple[list[int], list[type[Message]]]:
    """The three versions under `{topic}-value`, each importing the common file by reference; their ids and
    message classes (compiled here from the same texts, as a producer's generated code would be)."""
    client.register_schema(f"{topic}-common", Schema(COMMON, "PROTOBUF"))
    common_version = client.get_latest_version(f"{topic}-common").version
    reference = [SchemaReference("acme/common.proto", f"{topic}-common", common_version)]
    ids, classes = [], []
    for text in VERSIONS:
        ids.append(client.register_schema(f"{topic}-value", Schema(text, "PROTOBUF", reference)))
        pool = descriptor_pool.DescriptorPool()
        for file in compile_files({"order.proto": text, "acme/common.proto": COMMON}).file:
            pool.Add(file)
        classes.append(message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.orders.Order")))
    assert len(set(ids)) == 3
    return ids, classes


def framed(schema_id: int, body: bytes, indexes: tuple[int, ...] = (0,)) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + encode_message_indexes(indexes) + body


def record_value(ids: list[int], classes: list[type[Message]], i: int) -> bytes:
    """Record i as its producer sends it: version i % 3, framed with that version's schema id."""
    return framed(ids[i % 3], serialized(classes, i))


def assert_rows(rows: pa.Table, ids: list[int]) -> None:
    """`rows` hold exactly these records, each once, value-exact, under its own Kafka key str(i)."""
    got: dict[int, dict[str, Any]] = {}
    for row in rows.to_pylist():
        assert row["id"] not in got, f"record {row['id']} twice"
        got[row["id"]] = row
    assert sorted(got) == ids
    for i in ids:
        row = got[i]
        assert {k: row[k] for k in expected(i)} == expected(i), i
        assert row["_kafka_key"] == str(i).encode()
