import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from tabletopic.audit import compare_partition
from tabletopic.audit_reference import JsonReference, RawReference, reference_rows
from tabletopic.audit_values import (
    NOT_A_ROW,
    ValueReport,
    compare_aligned,
    compare_chunk,
    in_sample,
    letter_rows,
    locate,
)
from tabletopic.core import metadata
from tabletopic.core.records import RecordChunk
from tabletopic.decode.json_check import Misfit, check_json
from tabletopic.kafka.reader import PartitionLog

LOG = PartitionLog(0, 10, list(range(10)))


def arr(*values):
    return np.array(values, dtype=np.int64)


def test_table_and_dead_letters_together_hold_each_offset_once():
    report = compare_partition(0, LOG, 8, arr(0, 1, 3, 4, 6, 7), arr(2, 5, 8), dead_letters_committed=9)
    assert report.ok and report.dead_letters == 2  # 8 is ahead of the table: counted once the table gets there


def test_a_dead_letter_also_in_the_table_is_a_duplicate_and_a_gap_in_both_is_a_loss():
    report = compare_partition(0, LOG, 8, arr(0, 1, 2, 3, 4, 6, 7), arr(2), dead_letters_committed=8)
    assert report.duplicated == [2] and report.missing == [5]


def test_a_dead_letter_past_its_own_committed_offset_is_an_error():
    report = compare_partition(0, LOG, 4, arr(0, 1, 2, 3), arr(9), dead_letters_committed=5)
    assert report.beyond_committed == [9]


# --- audit --values: the pure comparison ---------------------------------------------------------

VALUE_SCHEMA = pa.schema([pa.field("n", pa.int64()), pa.field("s", pa.large_string())])
TABLE_SCHEMA = pa.schema([*VALUE_SCHEMA, *metadata.FIELDS])


def json_chunk(values, partition=0, first=0, keys=None):
    count = len(values)
    return RecordChunk("t", partition, list(range(first, first + count)), keys or [b"k%d" % i for i in range(count)],
                       values, [1_700_000_000_000 + i for i in range(count)], [None] * count)


def table_rows_of(chunk):
    """The rows a correct writer makes of `chunk` (every value good)."""
    return reference_rows(chunk, JsonReference(VALUE_SCHEMA), TABLE_SCHEMA).rows


def test_equal_rows_have_no_difference():
    chunk = json_chunk([b'{"n": 1, "s": "a"}', b'{"n": 2, "s": "b"}'])
    rows = table_rows_of(chunk)
    assert compare_aligned(0, chunk.offsets, rows, rows) == []


def test_two_swapped_rows_are_both_reported_with_their_offsets():
    chunk = json_chunk([b'{"n": %d, "s": "v%d"}' % (i, i) for i in range(6)])
    expected = table_rows_of(chunk)
    # The table holds the values of offsets 2 and 3 under each other's coordinates: offsets stay right.
    swapped = expected.take([0, 1, 3, 2, 4, 5]).set_column(
        expected.schema.get_field_index(metadata.OFFSET), metadata.OFFSET, expected[metadata.OFFSET])
    swapped = swapped.set_column(swapped.schema.get_field_index(metadata.TIMESTAMP), metadata.TIMESTAMP,
                                 expected[metadata.TIMESTAMP])
    differences = compare_aligned(0, chunk.offsets, swapped, expected)
    assert [(d.offset, d.column, d.table_value, d.topic_value) for d in differences] == [
        (2, "n", 3, 2), (3, "n", 2, 3)]
    assert str(differences[0]) == "partition 0 offset 2 column n: table 3 vs topic 2"


def test_metadata_columns_are_compared_too():
    chunk = json_chunk([b'{"n": 1, "s": "a"}'])
    expected = table_rows_of(chunk)
    other_key = expected.set_column(expected.schema.get_field_index(metadata.KEY), metadata.KEY,
                                    pa.array([b"other"], pa.binary()))
    [difference] = compare_aligned(0, chunk.offsets, other_key, expected)
    assert (difference.column, difference.table_value, difference.topic_value) == (metadata.KEY, b"other", b"k0")


def test_nulls_and_nans_equal_themselves_and_types_are_aligned_before_comparing():
    held = pa.table({"x": pa.array([1.0, float("nan"), None], pa.float64()), "s": pa.array(["a", None, "c"])})
    expected = pa.table({"x": pa.array([1.0, float("nan"), None], pa.float64()),
                         "s": pa.array(["a", None, "c"], pa.large_string())})
    assert compare_aligned(0, [0, 1, 2], held, expected) == []


def test_the_sample_is_the_same_on_every_run_and_about_its_rate():
    offsets = np.arange(100_000, dtype=np.int64)
    picked = in_sample(3, offsets, 0.01)
    assert np.array_equal(picked, in_sample(3, offsets, 0.01))
    assert 800 < picked.sum() < 1200
    assert not np.array_equal(picked, in_sample(4, offsets, 0.01))  # each partition its own records
    assert in_sample(0, offsets[:10], 1.0).all()


def test_locate_finds_offsets_or_minus_one():
    assert locate(arr(1, 4, 9, 10), arr(2, 4, 9)).tolist() == [-1, 1, 2, -1]
    assert locate(arr(1), arr()).tolist() == [-1]


@pytest.mark.parametrize(("value", "column"), [
    (1.5, pa.int64()), (True, pa.int64()), (5, pa.string()), ("5", pa.int64()), ({"a": 1}, pa.list_(pa.int64())),
])
def test_json_values_that_do_not_fit_their_column_are_misfits(value, column):
    with pytest.raises(Misfit):
        check_json(value, column, "c")


def test_json_values_that_fit_pass():
    check_json(3, pa.float64(), "c")
    check_json({"a": [1, None], "extra": "ignored"}, pa.struct([("a", pa.list_(pa.int64()))]), "c")


def test_the_json_reference_maps_each_value_to_one_row_or_refuses_it():
    chunk = json_chunk([b'{"n": 1, "s": "a"}', b'{"n": 2}{"n": 3}', b"  ", None, b'{"n": 1.5}', b"[1]"])
    rows = reference_rows(chunk, JsonReference(VALUE_SCHEMA), TABLE_SCHEMA)
    assert rows.good == [0, 3]
    assert sorted(rows.bad) == [1, 2, 4, 5]
    assert rows.rows.select(["n", "s", metadata.OFFSET]).to_pylist() == [
        {"n": 1, "s": "a", metadata.OFFSET: 0}, {"n": None, "s": None, metadata.OFFSET: 3}]
    assert rows.rows[metadata.TIMESTAMP][0].as_py() == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)


def test_a_chunk_is_compared_with_its_rows_and_its_dead_letters():
    chunk = json_chunk([b'{"n": 0, "s": "a"}', b'{"n": 1, "s": "b"}', b"{broken", b'{"n": 3, "s": "d"}',
                        b'{"n": 4.5}'])
    good = table_rows_of(chunk.select([0, 1, 3]))
    altered = good.set_column(0, "n", pa.array([0, 99, 3], pa.int64()))
    # Offset 4 (a float in a long column) got a row anyway, with its value truncated.
    truncated = reference_rows(json_chunk([b'{"n": 4, "s": null}'], first=4), JsonReference(VALUE_SCHEMA),
                               TABLE_SCHEMA).rows
    table = pa.concat_tables([altered.filter(pa.array([True, True, False])), truncated])  # offset 3 not held
    letters = letter_rows(chunk.select([2]))
    letters = letters.append_column(metadata.OFFSET, pa.array([2], pa.int64()))
    report = ValueReport()
    compare_chunk(report, chunk, JsonReference(VALUE_SCHEMA), TABLE_SCHEMA, table, letters)
    assert (report.rows_compared, report.letters_compared, report.absent) == (3, 1, 1)
    assert [(d.offset, d.column) for d in report.examples] == [(1, "n"), (4, NOT_A_ROW)]
    assert report.differing == 2 and not report.ok


def test_a_dead_letter_that_differs_from_its_record_is_reported():
    chunk = json_chunk([b"{broken"])
    letters = letter_rows(json_chunk([b"{other"])).append_column(metadata.OFFSET, pa.array([0], pa.int64()))
    report = ValueReport()
    compare_chunk(report, chunk, JsonReference(VALUE_SCHEMA), TABLE_SCHEMA, TABLE_SCHEMA.empty_table(), letters)
    assert [(d.offset, d.column, d.table_value) for d in report.examples] == [(0, "_kafka_value", b"{other")]


def test_raw_reference_keeps_key_and_value_bytes():
    schema = pa.schema([pa.field("key", pa.binary()), pa.field("value", pa.binary()), *metadata.FIELDS])
    rows = reference_rows(json_chunk([b"\xff\x00", None]), RawReference(), schema).rows
    assert rows.select(["key", "value"]).to_pylist() == [{"key": b"k0", "value": b"\xff\x00"},
                                                          {"key": b"k1", "value": None}]


def test_json_columns_without_a_plain_json_form_are_parsed_by_arrow_one_value_at_a_time():
    schema = pa.schema([pa.field("at", pa.timestamp("us", tz="UTC")),
                        pa.field("tags", pa.large_list(pa.large_string()))])
    chunk = json_chunk([b'{"at": "2026-01-02T03:04:05Z", "tags": ["a"]}', b'{"at": "never"}'])
    rows = reference_rows(chunk, JsonReference(schema), pa.schema([*schema, *metadata.FIELDS]))
    assert rows.good == [0] and list(rows.bad) == [1]
    assert rows.rows["at"][0].as_py() == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert rows.rows["tags"][0].as_py() == ["a"]


def test_the_reference_refuses_a_value_nested_too_deep_instead_of_recursing_out_of_the_stack():
    deep = b'{"n": 1, "s": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    expected = reference_rows(json_chunk([b'{"n": 1, "s": "a"}', deep]), JsonReference(VALUE_SCHEMA), TABLE_SCHEMA)
    assert expected.good == [0]
    assert "nested" in expected.bad[1] and "deep" in expected.bad[1]
