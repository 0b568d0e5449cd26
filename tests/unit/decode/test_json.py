import pyarrow as pa
import pytest

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import SchemaDrift
from tabletopic.decode.json import JsonDecoder, infer_schema

SCHEMA = pa.schema([
    pa.field("id", pa.int64()),
    pa.field("name", pa.large_string()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
    pa.field("tags", pa.large_list(pa.large_string())),
])


def chunk(values):
    n = len(values)
    return RecordChunk("t", 0, list(range(100, 100 + n)), [None] * n, values, [0] * n, [None] * n)


def test_a_batch_decodes_in_one_pass_against_the_schema():
    values = [b'{"id": 1, "name": "a", "at": "2026-01-01T00:00:00Z", "tags": ["x"], "extra": 5}',
              b'{\n  "id": 2,\n  "name": "b"\n}',
              None]
    decoded = JsonDecoder(SCHEMA, drift="ignore").decode(chunk(values))
    assert decoded.bad == [] and decoded.dropped_fields == 1
    table = decoded.rows
    assert table.column("id").to_pylist() == [1, 2, None]
    assert table.column("name").to_pylist() == ["a", "b", None]
    assert table.column("at").type == pa.timestamp("us", tz="UTC")
    assert table.column("tags").to_pylist() == [["x"], None, None]


@pytest.mark.parametrize(
    ("bad", "code", "reason"),
    [
        (b'{"id": 3, "name": ', Reason.MALFORMED_JSON, "malformed JSON"),
        (b"[1, 2]", Reason.MALFORMED_JSON, "expected a JSON object"),
        (b'{"id": "three"}', Reason.TYPE_MISMATCH, "type mismatch"),
        (b'{"a": 1}{"b": 2}', Reason.MALFORMED_JSON, "malformed JSON"),
    ],
)
def test_every_bad_value_is_found_with_its_reason_and_the_good_ones_kept(bad, code, reason):
    good = b'{"id": 1, "name": "a"}'
    values = [good] * 37 + [bad] + [good] * 20 + [bad]
    decoded = JsonDecoder(SCHEMA).decode(chunk(values))
    assert [b.index for b in decoded.bad] == [37, 58]
    assert all(b.code == code and reason in b.reason for b in decoded.bad)
    assert decoded.good == [i for i in range(59) if i not in (37, 58)]
    assert decoded.rows.num_rows == 57


def test_drift_policies_on_a_new_field():
    values = [b'{"id": 1}', b'{"id": 2, "new": "x", "nested": {"a": 1}}']
    with pytest.raises(SchemaDrift) as drift:
        JsonDecoder(SCHEMA, drift="evolve").decode(chunk(values))
    assert {"new", "nested"} <= set(drift.value.incoming.names)
    strict = JsonDecoder(SCHEMA, drift="strict").decode(chunk(values))
    assert [(b.index, b.code) for b in strict.bad] == [(1, Reason.UNKNOWN_FIELD)]
    assert "new" in strict.bad[0].reason
    ignored = JsonDecoder(SCHEMA, drift="ignore").decode(chunk(values))
    assert ignored.bad == [] and ignored.rows.num_rows == 2 and ignored.dropped_fields == 1


def test_a_new_field_differing_only_by_case_is_refused():
    decoded = JsonDecoder(SCHEMA).decode(chunk([b'{"id": 1}', b'{"ID": 2}']))
    assert [(b.index, b.code) for b in decoded.bad] == [(1, Reason.INCOMPATIBLE_SCHEMA)]
    assert "only by case" in decoded.bad[0].reason


def test_inference_keeps_numbers_and_does_not_guess_timestamps():
    schema = infer_schema([b'{"id": 1, "price": 2.5, "at": "2026-01-01T00:00:00", "nothing": null, "empty": {},'
                           b' "nested": {"n": [1, 2]}}'])
    assert schema == pa.schema([
        pa.field("id", pa.int64()), pa.field("price", pa.float64()), pa.field("at", pa.string()),
        pa.field("nested", pa.struct([pa.field("n", pa.list_(pa.int64()))])),
    ])


def test_maps_take_the_per_record_path():
    schema = pa.schema([pa.field("m", pa.map_(pa.large_string(), pa.int64()))])
    table = JsonDecoder(schema).decode(chunk([b'{"m": {"a": 1}}', b"{}"])).rows
    assert table.column("m").to_pylist() == [[("a", 1)], None]


def test_null_empty_and_blank_values_are_rows_of_nulls_in_either_join():
    decoder = JsonDecoder(SCHEMA)
    for values in ([b'{"id": 1}', b"   ", b'{"id": 3}'], [b'{"id": 1}', None, b"", b'{"id": 3}']):
        rows = decoder.decode(chunk(values)).rows
        assert rows.num_rows == len(values)
        assert rows.column("id").to_pylist() == [1, *([None] * (len(values) - 2)), 3]


@pytest.mark.parametrize("blank", [b" ", b"\t", b"\n", b" \r\n "])
@pytest.mark.parametrize("two", [b'{"id": 2}{"id": 22}', b'{"id": 2}\n{"id": 22}', b'{"id": 2} {"id": 22}'])
def test_a_blank_value_and_one_holding_two_objects_never_pair_rows_with_the_wrong_records(blank, two):
    """A blank value (no row) and one holding two objects (two rows) kept the count right, so every
    later row was paired with the record before it."""
    values = [b'{"id": 0}', blank, two, b'{"id": 3}', b'{"id": 4}']
    decoded = JsonDecoder(SCHEMA).decode(chunk(values))
    assert [(b.index, b.code) for b in decoded.bad] == [(2, Reason.MALFORMED_JSON)]
    assert decoded.good == [0, 1, 3, 4]
    assert decoded.rows.column("id").to_pylist() == [0, None, 3, 4]


def decode_summary(values):
    """What the decoder makes of a batch, in plain data (runs in a spawned process)."""
    decoded = JsonDecoder(SCHEMA).decode(chunk(values))
    return decoded.rows.column("id").to_pylist(), decoded.good, [(b.index, str(b.code)) for b in decoded.bad]


@pytest.mark.parametrize("values", [[b"null"], [b'{"id": 1}', b"null", b" null ", b"7"], [b"null", b"null"]])
def test_a_json_null_value_is_a_dead_letter_and_never_crashes_the_process(values):
    """pyarrow.json reads the text `null` as a row of nulls, and kills the process with a segfault
    (pyarrow 26) when a batch, or a half of one split to find a bad value, holds nothing else."""
    from tests.unit.decode.deadline import within

    ids, good, bad = within(120, decode_summary, values)
    objects = [i for i, v in enumerate(values) if v.startswith(b"{")]
    assert ids == [1] * len(objects) and (good or []) == objects
    assert bad == [(i, "malformed_json") for i in range(len(values)) if i not in objects]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (b'{"id": 1.5}', "(value).id"),  # from_pylist would store 1
        (b'{"id": 2, "attrs": {"k": 2.7}}', "(value).attrs{}"),  # ... and 2 in the map
        (b'{"id": true}', "(value).id"),
        (b'{"id": 3, "attrs": {"k": "4"}}', "(value).attrs{}"),
    ],
)
def test_the_per_record_path_never_converts_a_value_into_another_type(value, path):
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("attrs", pa.map_(pa.string(), pa.int64()))])
    decoded = JsonDecoder(schema).decode(chunk([b'{"id": 7, "attrs": {"k": 8}}', value, b'{"id": 9}']))
    assert decoded.rows.column("id").to_pylist() == [7, 9]
    assert decoded.good == [0, 2]
    assert [(b.index, b.code) for b in decoded.bad] == [(1, Reason.TYPE_MISMATCH)]
    assert path in decoded.bad[0].reason


def test_strings_are_parsed_straight_into_the_tables_large_types():
    """pyiceberg gives a table's strings as large_string: parsed so, the rows need no cast of their text
    (only a list's offsets are widened after: pyarrow.json makes no large list)."""
    schema = pa.schema([pa.field("name", pa.large_string()), pa.field("blob", pa.large_binary()),
                        pa.field("inner", pa.struct([pa.field("s", pa.large_string())])),
                        pa.field("tags", pa.large_list(pa.field("element", pa.large_string(), nullable=False)))])
    values = [b'{"name": "a", "blob": "b", "inner": {"s": "c"}, "tags": ["x", "y"]}', b'{"name": "\\u00e9"}']
    decoded = JsonDecoder(schema).decode(chunk(values))
    assert decoded.bad == []
    rows = decoded.rows
    assert rows.schema.field("name").type == pa.large_string()
    assert rows.schema.field("blob").type == pa.large_binary()
    assert rows.schema.field("inner").type == pa.struct([pa.field("s", pa.large_string())])
    assert rows.schema.field("tags").type.value_type == pa.large_string()
    assert rows.to_pylist() == [{"name": "a", "blob": b"b", "inner": {"s": "c"}, "tags": ["x", "y"]},
                                {"name": "é", "blob": None, "inner": None, "tags": None}]
