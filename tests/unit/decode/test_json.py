import pyarrow as pa
import pytest

from tabletopic.decode.base import BadValue
from tabletopic.decode.json import JsonDecoder, infer_schema
from tabletopic.kafka.records import RecordChunk

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
    table = JsonDecoder(SCHEMA).decode(chunk(values))
    assert table.column("id").to_pylist() == [1, 2, None]
    assert table.column("name").to_pylist() == ["a", "b", None]
    assert table.column("at").type == pa.timestamp("us", tz="UTC")
    assert table.column("tags").to_pylist() == [["x"], None, None]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b'{"id": 3, "name": ', "malformed JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": "three"}', "type mismatch"),
        (b'{"a": 1}{"b": 2}', "malformed JSON"),
    ],
)
def test_the_first_bad_value_is_found_with_its_reason(bad, reason):
    good = b'{"id": 1, "name": "a"}'
    values = [good] * 37 + [bad] + [good] * 20 + [bad]
    with pytest.raises(BadValue) as caught:
        JsonDecoder(SCHEMA).decode(chunk(values))
    assert caught.value.index == 37
    assert reason in caught.value.reason


def test_inference_keeps_numbers_and_does_not_guess_timestamps():
    schema = infer_schema([b'{"id": 1, "price": 2.5, "at": "2026-01-01T00:00:00", "nothing": null, "empty": {},'
                           b' "nested": {"n": [1, 2]}}'])
    assert schema == pa.schema([
        pa.field("id", pa.int64()), pa.field("price", pa.float64()), pa.field("at", pa.string()),
        pa.field("nested", pa.struct([pa.field("n", pa.list_(pa.int64()))])),
    ])


def test_maps_take_the_per_record_path():
    schema = pa.schema([pa.field("m", pa.map_(pa.large_string(), pa.int64()))])
    table = JsonDecoder(schema).decode(chunk([b'{"m": {"a": 1}}', b"{}"]))
    assert table.column("m").to_pylist() == [[("a", 1)], None]
