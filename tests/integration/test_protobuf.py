"""format: protobuf (issue 20) through a real Schema Registry (Apicurio's Confluent API): a .proto importing
another registered .proto, three schema versions produced interleaved into one topic, read back value-exact
by pyiceberg; a wrong message index and a garbage body are dead letters, the rest rows; `tabletopic audit`
and `audit --values` agree; dead letters of a too-tight `max_items` replay once it is raised."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.decode.protobuf_schema import compile_files
from tabletopic.decode.wire import encode_message_indexes
from tests.support import (
    audit_cli,
    audit_values_cli,
    catalog_of,
    log_end,
    produce,
    wait_committed,
    writer_config,
)

RECORDS = 3000
PARTITIONS = 2
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
        row["tags"] = [f"t{k}" for k in range(5)]  # past the first run's max_items: dead letters, replayed
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


@pytest.fixture
def client(registry) -> Iterator[SchemaRegistryClient]:
    registry_client = SchemaRegistryClient({"url": registry.url})
    yield registry_client
    registry_client.close()


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


def test_protobuf_versions_with_imports_round_trip(kafka, registry, client, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "proto.orders"
    ids, classes = register_versions(client, topic)
    values = [(i % PARTITIONS, str(i).encode(), framed(ids[i % 3], serialized(classes, i))) for i in range(RECORDS)]
    bad_index = framed(ids[2], serialized(classes, 2), (3,))  # the file has one message
    garbage = framed(ids[0], b"\x0a\xff\xff\xff")  # a length past the end of the body
    values[1000:1000] = [(0, b"bad-index", bad_index), (1, b"garbage", garbage)]
    produce(kafka.bootstrap, topic, ((p, k, v, None) for p, k, v in values))
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)

    settings = {"format": "protobuf", "max_items": 4}
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           schema_registry={"url": registry.url}, table_settings=settings)
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=120, writer=writer)
    assert writer.stop() == 0, writer.log()

    letters = iceberg.load_table(dlq_identifier(table)).scan().to_arrow()
    by_key = dict(zip(letters["_kafka_key"].to_pylist(), letters["reason"].to_pylist(), strict=True))
    assert by_key.pop(b"bad-index") == "unknown_message_index"
    assert by_key.pop(b"garbage") == "undecodable_protobuf"
    too_many = {str(i).encode() for i in range(0, RECORDS, 50)}
    assert by_key == dict.fromkeys(too_many, "too_many_items")

    loaded = iceberg.load_table(table)
    assert loaded.schema().as_arrow().field("at").type == pa.timestamp("us", tz="UTC")
    assert_rows(loaded.scan().to_arrow(), [i for i in range(RECORDS) if i % 50])
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    values = audit_values_cli(config, topic, table)
    assert values.returncode == 0, values.stdout + values.stderr
    assert " 0 differ" in values.stdout, values.stdout

    # The fix: a max_items the records fit; their dead letters replay, once.
    fixed = writer_config(tmp_path / "fixed.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                          schema_registry={"url": registry.url}, table_settings={"format": "protobuf"})
    replayed = subprocess.run([sys.executable, "-m", "tabletopic", "dlq", "replay", "--config", str(fixed),
                               "--table", table, "--reason", "too_many_items"],
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed: {len(too_many)} (appended {len(too_many)})" in replayed.stdout, replayed.stdout
    assert_rows(iceberg.load_table(table).scan().to_arrow(), list(range(RECORDS)))
    left = iceberg.load_table(dlq_identifier(table)).scan().to_arrow()["reason"].to_pylist()
    assert sorted(left) == ["undecodable_protobuf", "unknown_message_index"]


def assert_rows(rows: pa.Table, ids: list[int]) -> None:
    got = {row["id"]: row for row in rows.to_pylist()}
    assert sorted(got) == ids
    for i in ids:
        row = got[i]
        assert {k: row[k] for k in expected(i)} == expected(i), i
        assert row["_kafka_key"] == str(i).encode()
