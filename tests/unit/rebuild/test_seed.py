"""`rebuild --seed-from-table` (tabletopic/rebuild/seed.py): the live table's rows below the log start re-projected
under the new settings, refused where rows cannot give the new version's rows; and the audits of a table holding
rows below the log start (counted apart, a duplicate still a failure)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from pyiceberg.expressions.parser import parse

from tabletopic.audit import compare_partition, format_report
from tabletopic.audit_keys import DELETED, compare_keys
from tabletopic.config import TableConfig
from tabletopic.core import metadata
from tabletopic.core.upsert_mode import UpsertMode
from tabletopic.kafka.reader import PartitionLog
from tabletopic.rebuild.cutover import SwapRefused
from tabletopic.rebuild.seed import MadeUnder, below_filter, column_mapping, refusal, reproject, seed_parts

JSON_APPEND = MadeUnder("json", None, ())
KAFKA_KEYED = MadeUnder("json", UpsertMode("kafka-key", "json"), ())
SCHEMA = pa.schema([pa.field("n", pa.int64()), pa.field("name", pa.string()), *metadata.FIELDS])


def spec(**settings: object) -> TableConfig:
    return dataclasses.replace(TableConfig(table="shop.items__rebuild", topic="t"), **settings)


# --- the columns ---------------------------------------------------------------------------------


def test_a_renamed_column_takes_the_old_column_of_its_field_and_the_kafka_columns_keep_theirs():
    mapping = column_mapping(SCHEMA.names, JSON_APPEND, spec(rename_columns={"name": "customer"}))
    assert mapping == {"n": "n", "name": "customer", **{name: name for name in metadata.NAMES}}
    rows = pa.table({"n": [1, 2], "name": ["a", None], metadata.OFFSET: [7, 8]})
    moved = reproject(rows, mapping)
    assert moved.column_names == ["n", "customer", metadata.OFFSET]
    assert moved.to_pydict() == {"n": [1, 2], "customer": ["a", None], metadata.OFFSET: [7, 8]}


def test_a_rename_the_old_rows_were_made_under_is_undone_first():
    old = MadeUnder("json", None, (), {"name": "label"})
    columns = ["n", "label", metadata.OFFSET]
    assert column_mapping(columns, old, spec(rename_columns={"name": "customer"})) == \
        {"n": "n", "label": "customer", metadata.OFFSET: metadata.OFFSET}
    # The new version without the rename: the field's own name again.
    assert column_mapping(columns, old, spec())["label"] == "name"


def test_lowercase_folds_the_rename_source_as_the_decoder_does():
    old = MadeUnder("json", None, (), lowercase=True)
    mapping = column_mapping(["username"], old, spec(column_names="lowercase", rename_columns={"userName": "who"}))
    assert mapping == {"username": "who"}


def test_two_old_columns_onto_one_new_column_are_refused():
    with pytest.raises(SwapRefused, match="'name' and 'customer' would both become 'customer'"):
        column_mapping(["name", "customer"], JSON_APPEND, spec(rename_columns={"name": "customer"}))


def test_a_rename_of_a_kafka_key_column_is_refused():
    with pytest.raises(SwapRefused, match="renames a key column"):
        column_mapping(["id", "qty"], KAFKA_KEYED, spec(mode="upsert", rename_columns={"id": "ident"}), keys=["id"])


# --- what rows cannot give -----------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "setting"), [
    (JSON_APPEND, spec(metadata_columns=False), "metadata_columns: false"),
    (MadeUnder("avro", None, ()), spec(format="json"), "format: avro → json"),
    (MadeUnder(None, None, ()), spec(format="raw"), "format: → raw"),
    (MadeUnder("raw", None, ()), spec(format="json"), "format: raw → json"),
    (JSON_APPEND, spec(mode="upsert"), "mode: append → upsert"),
    (KAFKA_KEYED, spec(), "mode: upsert → append"),
    (KAFKA_KEYED, spec(mode="upsert", key=["id"]), "key: the Kafka key → ['id']"),
    (MadeUnder("json", UpsertMode("value", "json"), ("id",)), spec(mode="upsert", key=["sku"]),
     "key: ['id'] → ['sku']"),
    (KAFKA_KEYED, spec(mode="upsert", key_format="string"), "key_format: json → string"),
    (KAFKA_KEYED, spec(envelope="debezium"), "envelope: none → debezium"),
    (JSON_APPEND, spec(column_names="lowercase"), "column_names: lowercase"),
])
def test_a_setting_rows_cannot_be_re_derived_under_is_named(old: MadeUnder, new: TableConfig, setting: str) -> None:
    schema = pa.schema([pa.field("userId", pa.int64()), *metadata.FIELDS])
    why = refusal(old, new, schema)
    assert why is not None and why.startswith(setting), why


@pytest.mark.parametrize("new", [
    spec(partition_by=["bucket(4, n)"]),
    spec(rename_columns={"name": "label"}),
    spec(json_drift="ignore", max_record_bytes=1024),
    spec(column_names="lowercase"),  # the rows' names are lowercase already
])
def test_a_new_partition_spec_renames_or_caps_are_re_projected(new: TableConfig) -> None:
    assert refusal(JSON_APPEND, new, SCHEMA) is None
    assert refusal(MadeUnder(None, None, ()), new, SCHEMA) is None  # json or avro: the table does not say


def test_the_same_key_of_an_upsert_table_is_re_projected():
    assert refusal(KAFKA_KEYED, spec(mode="upsert", partition_by=["bucket(8, id)"]), SCHEMA) is None


# --- what is read and committed ------------------------------------------------------------------


def test_the_filter_picks_the_rows_below_each_partitions_log_start():
    text = below_filter("t", {0: 2000, 1: 0, 2: 5})
    assert text == ("_kafka_topic == 't' and ((_kafka_partition == 0 and _kafka_offset < 2000) or "
                    "(_kafka_partition == 2 and _kafka_offset < 5))")
    parse(text)  # pyiceberg reads it
    assert below_filter("t", {0: 0}) == "false"


def test_the_seed_commit_covers_each_partition_from_zero_to_its_log_start():
    rows = pa.table({metadata.PARTITION: pa.array([0, 2, 0], pa.int32()), metadata.OFFSET: [1, 3, 4]})
    parts = seed_parts("t", rows, {0: 2000, 1: 0, 2: 5, 3: 9}, [0, 2, 3])
    assert {tp: (held.first, held.last, held.rows()[metadata.OFFSET].to_pylist()) for tp, held in parts.items()} == \
        {("t", 0): (0, 1999, [1, 4]), ("t", 2): (0, 4, [3]), ("t", 3): (0, 8, [])}


# --- the audits of a seeded table ----------------------------------------------------------------


def offsets(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_rows_below_the_log_start_are_counted_apart_and_a_duplicate_there_still_fails():
    log = PartitionLog(3, 6, [3, 4, 5])
    seeded = compare_partition(0, log, 6, offsets(0, 1, 2, 3, 4, 5), offsets(), None)
    assert seeded.ok and seeded.below_log_start == 3
    assert "3 rows below the log start (3), not checked against the log" in format_report([seeded])[1]
    doubled = compare_partition(0, log, 6, offsets(0, 1, 1, 2, 3, 4, 5), offsets(), None)
    assert not doubled.ok and doubled.duplicated == [1]


def keys_table(rows: list[tuple[int, int, int]]) -> pa.Table:
    ids, partitions, offsets_ = zip(*rows, strict=True)
    return pa.table({"id": pa.array(ids, pa.int64()), metadata.PARTITION: pa.array(partitions, pa.int32()),
                     metadata.OFFSET: pa.array(offsets_, pa.int64())})


def test_an_upsert_table_s_keys_held_below_the_log_start_are_counted_apart_not_resurrected():
    # The log (from offset 100) holds key 1's last record at 150 and deletes key 2 at 160.
    expected = pa.table({"id": pa.array([1, 2], pa.int64()), metadata.PARTITION: pa.array([0, 0], pa.int32()),
                         metadata.OFFSET: pa.array([150, 160], pa.int64()), DELETED: [False, True]})
    seeded = compare_keys(expected, keys_table([(1, 0, 150), (7, 0, 40)]), {0: 100})
    assert seeded.ok and seeded.below_log_start == 1
    assert not compare_keys(expected, keys_table([(1, 0, 150), (7, 0, 40)])).ok  # without the log start: resurrected
    # Below the log start, yet the log changed the key since: stale, resurrected; two rows: doubled.
    for rows, kind in (([(1, 0, 50)], "stale"), ([(1, 0, 150), (2, 0, 50)], "resurrected"),
                       ([(1, 0, 150), (7, 0, 40), (7, 0, 41)], "doubled")):
        report = compare_keys(expected, keys_table(rows), {0: 100})
        assert not report.ok and kind in report.samples, (rows, report)
