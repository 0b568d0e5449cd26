"""The CDC stack (tests/cdc_stack.py): PostgreSQL -> Debezium in Kafka Connect -> Kafka carries a table's
snapshot, inserts, updates and deletes in order, keyed by the primary key, with a tombstone after each delete.

The records seen here are kept as fixtures for the envelope's unit tests (tests/unit/upsert/fixtures/): rewrite
them with `TABLETOPIC_WRITE_CDC_FIXTURES=1`; otherwise this test checks that they still have the shape the
connector produces (same ops, keys, fields).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from tabletopic.local import debezium
from tests.cdc_stack import Record, read_records, start_cdc_connector

FIXTURES = Path(__file__).parents[1] / "unit" / "upsert" / "fixtures"
# variant -> (key schemas, value schemas): JsonConverter's embedded schema/payload on or off.
VARIANTS = {"value-schemas": (False, True), "no-schemas": (False, False), "schemas": (True, True)}
DDL = "CREATE TABLE {table} (id integer PRIMARY KEY, name text NOT NULL, amount numeric(10,2), at timestamptz)"
BEFORE_CONNECTOR = "INSERT INTO {table} VALUES (1, 'ada', 12.50, '2026-12-01 00:00:00+00')"
CHANGES = (
    "INSERT INTO {table} VALUES (2, 'bob', 3.10, '2026-12-01 01:00:00+00');"
    "UPDATE {table} SET name = 'ada l', amount = 13.00 WHERE id = 1;"
    "DELETE FROM {table} WHERE id = 2;"
)
# (kind, key id): the snapshot read of row 1, then the changes in commit order.
EXPECTED = [("r", 1), ("c", 2), ("u", 1), ("d", 2), ("tombstone", 2)]


def test_snapshot_insert_update_delete_arrive_in_order_with_keys_and_tombstone(kafka, postgres, debezium_connect):
    run = uuid.uuid4().hex[:8]
    started = {}
    for variant, (key_schemas, value_schemas) in VARIANTS.items():
        table = f"cdc_{variant.replace('-', '_')}_{run}"
        postgres.psql(f"{DDL.format(table=table)}; {BEFORE_CONNECTOR.format(table=table)};")
        connector = start_cdc_connector(debezium_connect, postgres, table, f"cdc-{variant}-{run}",
                                        f"cdc_{variant.replace('-', '_')}_{run}", key_schemas, value_schemas)
        started[variant] = (table, connector)
    for table, _ in started.values():
        postgres.psql(CHANGES.format(table=table))

    try:
        for variant, (table, connector) in started.items():
            records = read_records(kafka.bootstrap, connector.topic, len(EXPECTED), timeout_s=60,
                                   connect=debezium_connect, connector=connector.name)
            key_schemas, value_schemas = VARIANTS[variant]
            seen = [(_kind(record, value_schemas), _key_id(record, key_schemas)) for record in records]
            assert seen == EXPECTED, variant
            assert [record.offset for record in records] == list(range(len(EXPECTED)))
            after = [_payload(record, value_schemas)["after"] for record in records[:3]]
            assert after == [
                {"id": 1, "name": "ada", "amount": "12.50", "at": "2026-12-01T00:00:00.000000Z"},
                {"id": 2, "name": "bob", "amount": "3.10", "at": "2026-12-01T01:00:00.000000Z"},
                {"id": 1, "name": "ada l", "amount": "13.00", "at": "2026-12-01T00:00:00.000000Z"},
            ]
            delete = _payload(records[3], value_schemas)
            assert delete["after"] is None and delete["before"]["id"] == 2
            assert delete["source"]["table"] == table
            _keep_or_check_fixture(variant, table, records, key_schemas, value_schemas)
    finally:
        for _, connector in started.values():
            debezium_connect.delete_connector(connector.name)
    assert [debezium_connect.status(connector.name) for _, connector in started.values()] == [None] * len(started)


def _payload(record: Record, schemas: bool) -> Any:
    assert record.value is not None
    document = json.loads(record.value)
    if schemas:
        assert set(document) == {"schema", "payload"}
        return document["payload"]
    return document


def _kind(record: Record, value_schemas: bool) -> str:
    return "tombstone" if record.value is None else str(_payload(record, value_schemas)["op"])


def _key_id(record: Record, key_schemas: bool) -> int:
    assert record.key is not None
    key = json.loads(record.key)
    return int((key["payload"] if key_schemas else key)["id"])


def _fixture_record(kind: str, record: Record) -> dict[str, Any]:
    return {
        "kind": kind,
        "offset": record.offset,
        "key": record.key.decode() if record.key is not None else None,
        "value": record.value.decode() if record.value is not None else None,
    }


def _shape(fixture_record: dict[str, Any], key_schemas: bool, value_schemas: bool) -> tuple[Any, ...]:
    """What must not drift between the stored fixture and the live connector: kind, key, the envelope's fields.
    (Not the values: the source's timestamps and LSNs, and the schema names, which carry the topic, change.)"""
    key = json.loads(fixture_record["key"])
    key = key["payload"] if key_schemas else key
    value = fixture_record["value"]
    if value is None:
        return fixture_record["kind"], key, None
    document = json.loads(value)
    payload = document["payload"] if value_schemas else document
    return (fixture_record["kind"], key, sorted(payload), sorted(payload["source"]),
            sorted(payload["after"] or payload["before"]))


def _keep_or_check_fixture(variant: str, table: str, records: list[Record], key_schemas: bool,
                           value_schemas: bool) -> None:
    path = FIXTURES / f"debezium-postgres-{variant}.json"
    live = [_fixture_record(kind, record) for (kind, _), record in zip(EXPECTED, records, strict=True)]
    if os.environ.get("TABLETOPIC_WRITE_CDC_FIXTURES") == "1":
        FIXTURES.mkdir(parents=True, exist_ok=True)
        document = {
            "produced_by": f"tests/integration/test_cdc_stack.py: PostgreSQL (pgoutput) -> Debezium "
                           f"{debezium.DEBEZIUM_VERSION} postgres connector -> Kafka, JsonConverter",
            "key.converter.schemas.enable": key_schemas,
            "value.converter.schemas.enable": value_schemas,
            "decimal.handling.mode": "string",
            "table": f"public.{table}",
            "ddl": DDL.format(table=table),
            "before_connector": BEFORE_CONNECTOR.format(table=table),
            "changes": CHANGES.format(table=table),
            "records": live,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return
    stored = json.loads(path.read_text())["records"]
    shapes = [_shape(record, key_schemas, value_schemas) for record in stored]
    assert shapes == [_shape(record, key_schemas, value_schemas) for record in live], path
