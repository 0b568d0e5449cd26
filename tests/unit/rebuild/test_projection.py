"""What a rebuild records on a table (tabletopic/catalog/projection.py): the projection its rows are made under
and a cutover's freeze; and a writer's refusal to change a table made under another projection (SQLite catalog)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.catalog.projection import (
    FROZEN_KEY,
    OPERATIONAL,
    PROJECTION_KEY,
    Projection,
    ProjectionChanged,
    TableFrozen,
    active_freeze,
    check_cutover,
    encode_freeze,
    encode_projection,
    hash_of,
    projection_differences,
    projection_hash,
    recorded_projection,
    settings_of,
    under_projection,
)
from tabletopic.catalog.tables import create_table
from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.committer import Committer, table_offsets
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter import rows as dead_letter
from tabletopic.rebuild.cutover import set_properties
from tabletopic.sink import TableSink

REBUILT = TableConfig(table="ns.t", topic="orders", commit_interval_seconds=5.0, partition_by=["bucket(4, id)"],
                      rename_columns={"name": "customer"}, mode="upsert", key=["id"])


def test_a_projection_holds_what_makes_the_rows_and_nothing_of_how_the_table_is_operated() -> None:
    settings = settings_of(REBUILT)
    assert settings["partition_by"] == ["bucket(4, id)"]
    assert settings["rename_columns"] == {"name": "customer"}
    assert settings["key"] == ["id"] and settings["mode"] == "upsert"
    assert not OPERATIONAL & settings.keys()
    assert {"table", "topic", "topics", "commit_interval_seconds", "errors", "dead_letter_topic",
            "max_dead_letters_per_minute", "properties"} <= OPERATIONAL
    json.dumps(settings)  # plain JSON values


def test_the_hash_does_not_depend_on_the_order_of_a_mapping() -> None:
    one = TableConfig(table="ns.t", topic="t", rename_columns={"a": "x", "b": "y"},
                      cdc_columns={"op": "o", "lsn": "l"})
    other = TableConfig(table="ns.t", topic="t", rename_columns={"b": "y", "a": "x"},
                        cdc_columns={"lsn": "l", "op": "o"})
    assert hash_of(one) == hash_of(other)
    assert projection_hash({"b": 1, "a": {"d": 2, "c": 3}}) == projection_hash({"a": {"c": 3, "d": 2}, "b": 1})


def test_configs_differing_only_in_how_the_table_is_operated_share_a_projection() -> None:
    operated_otherwise = dataclasses.replace(
        REBUILT, table="ns.t__rebuild", topic=None, topics=["orders", "more"], commit_interval_seconds=60.0,
        errors="fail", dead_letter_topic="dlt", max_dead_letters_per_minute=5, properties={"x": "y"},
        target_file_size_bytes=1 << 20)
    assert hash_of(operated_otherwise) == hash_of(REBUILT)


@pytest.mark.parametrize("change", [
    {"partition_by": []}, {"rename_columns": {}}, {"mode": "append", "key": []}, {"key": ["id", "n"]},
    {"json_drift": "ignore"}, {"column_names": "lowercase"}, {"max_record_bytes": 1000},
])
def test_a_setting_that_makes_the_rows_changes_the_projection(change: dict[str, object]) -> None:
    assert hash_of(dataclasses.replace(REBUILT, **change)) != hash_of(REBUILT)  # type: ignore[arg-type]


def test_a_table_recording_a_projection_makes_the_writers_rows_under_it_operated_as_the_writer_is() -> None:
    recorded = recorded_projection({PROJECTION_KEY: encode_projection(REBUILT)})
    assert recorded is not None and recorded.hash == hash_of(REBUILT)
    older_file = TableConfig(table="ns.t", topic="orders-v2", commit_interval_seconds=7.0, errors="skip")
    adopted = under_projection(older_file, recorded)
    assert adopted == dataclasses.replace(REBUILT, topic="orders-v2", commit_interval_seconds=7.0, errors="skip")
    assert hash_of(adopted) == recorded.hash  # the adopted writer's commits pass the table's check
    assert projection_differences(older_file, recorded) == {
        "key": {"config": [], "table": ["id"]}, "mode": {"config": None, "table": "upsert"},
        "partition_by": {"config": [], "table": ["bucket(4, id)"]},
        "rename_columns": {"config": {}, "table": {"name": "customer"}}}
    assert projection_differences(REBUILT, recorded) == {}


def test_a_projection_recorded_by_a_version_with_a_setting_fewer_is_adopted_for_good() -> None:
    settings = settings_of(REBUILT)
    settings.pop("cdc_columns", None)  # as a version before `cdc_columns` recorded it
    older = Projection(projection_hash(settings), settings)
    adopted = under_projection(TableConfig(table="ns.t", topic="orders"), older)
    # Otherwise the adopted sink raises ProjectionChanged on the table it adopted, again and again.
    assert hash_of(adopted) == older.hash


def test_no_projection_recorded() -> None:
    assert recorded_projection({}) is None
    assert recorded_projection({PROJECTION_KEY: ""}) is None


def frozen(by: str, until: float) -> dict[str, str]:
    return {FROZEN_KEY: encode_freeze(by, until)}


def test_a_frozen_table_refuses_every_commit_until_its_freeze_lapses() -> None:
    properties = frozen("cut-1", 100.0)
    for mine in (hash_of(REBUILT), None):  # a data table's commit and a dead-letter table's
        with pytest.raises(TableFrozen) as raised:
            check_cutover("ns.t", properties, mine, now=99.9)
        assert (raised.value.table, raised.value.by, raised.value.until) == ("ns.t", "cut-1", 100.0)
        check_cutover("ns.t", properties, mine, now=100.0)  # lapsed at `until`
        check_cutover("ns.t", properties, mine, now=1e12)
    assert active_freeze(properties, 99.0) is not None and active_freeze(properties, 100.0) is None
    assert active_freeze({}, 0.0) is None


def test_a_table_made_under_another_projection_refuses_the_commit() -> None:
    properties = {PROJECTION_KEY: encode_projection(REBUILT)}
    mine = hash_of(dataclasses.replace(REBUILT, partition_by=[]))
    with pytest.raises(ProjectionChanged) as raised:
        check_cutover("ns.t", properties, mine, now=0.0)
    assert (raised.value.recorded, raised.value.mine) == (hash_of(REBUILT), mine)
    check_cutover("ns.t", properties, hash_of(REBUILT), now=0.0)
    check_cutover("ns.t", {}, mine, now=0.0)  # no projection recorded: any writer's
    check_cutover("ns.t", properties, None, now=0.0)  # a dead-letter table has none


def test_the_freeze_is_said_before_the_projection() -> None:
    properties = {PROJECTION_KEY: encode_projection(REBUILT), **frozen("cut-1", 100.0)}
    with pytest.raises(TableFrozen):
        check_cutover("ns.t", properties, "another", now=50.0)
    with pytest.raises(ProjectionChanged):
        check_cutover("ns.t", properties, "another", now=150.0)  # the freeze lapsed


# --- against a catalog -----------------------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def chunk(values: list[bytes], first: int = 0) -> RecordChunk:
    n = len(values)
    return RecordChunk("orders", 0, list(range(first, first + n)), [None] * n, list(values), [0] * n, [None] * n)


def stamped_sink(catalog: SqlCatalog) -> TableSink:
    """A sink of ns.t (which has a dead-letter table) after its first commit; then a rebuild's cutover puts a
    table made under another projection at ns.t."""
    create_table(catalog, "ns.t__dlq", dead_letter.SCHEMA, [], {})
    spec = TableConfig(table="ns.t", topic="orders")
    sink = TableSink(spec, catalog, "g", "w", RetryPolicy())
    sink.ingest(chunk([b'{"id": 1}']), now=0.0)
    sink.flush()
    set_properties(catalog, "ns.t", {PROJECTION_KEY: encode_projection(dataclasses.replace(spec, partition_by=["id"]))})
    return sink


def test_a_sink_does_not_evolve_a_table_made_under_another_projection(catalog: SqlCatalog) -> None:
    sink = stamped_sink(catalog)
    before = catalog.load_table("ns.t").schema()
    with contextlib.suppress(ProjectionChanged):
        sink.ingest(chunk([b'{"id": 2, "note": "new"}'], first=1), now=0.0)
    with contextlib.suppress(ProjectionChanged):
        sink.flush()
    table = catalog.load_table("ns.t")
    assert table.schema() == before and "note" not in table.schema().column_names
    assert table_offsets(table, "g") == {("orders", 0): 1}


def test_a_sink_says_projection_changed_and_keeps_no_dead_letter_for_it(catalog: SqlCatalog) -> None:
    sink = stamped_sink(catalog)
    with pytest.raises(ProjectionChanged):
        sink.ingest(chunk([b'{"id": 2, "note": "new"}'], first=1), now=0.0)
    with contextlib.suppress(ProjectionChanged):
        sink.flush()
    # After adopting the projection the writer reads offset 1 again and writes it as a row: a dead letter of it
    # would stand beside that row.
    assert catalog.load_table("ns.t__dlq").scan().to_arrow().num_rows == 0


def test_a_committer_made_under_another_projection_commits_nothing(catalog: SqlCatalog) -> None:
    create_table(catalog, "ns.t", pa.schema([pa.field("o", pa.int64())]), [], {})
    set_properties(catalog, "ns.t", {PROJECTION_KEY: encode_projection(REBUILT)})
    committer = Committer(catalog, "ns.t", "g", "w", RetryPolicy(initial_backoff_s=0.001), sleep=lambda _: None)
    committer.projection = hash_of(TableConfig(table="ns.t", topic="orders"))
    rows = pa.table({"o": pa.array([0, 1], pa.int64())})
    with pytest.raises(ProjectionChanged):
        committer.commit({("orders", 0): PartitionBuffer(0, 1, [rows], rows.nbytes)})
    assert catalog.load_table("ns.t").current_snapshot() is None
