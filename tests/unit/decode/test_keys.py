import io
import json
import struct
import uuid

import fastavro
import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import Schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabletopic.core.reasons import Reason
from tabletopic.decode.keys import KeyDecoder
from tabletopic.kafka.registry import SchemaRegistry

ID_REGION = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("region", pa.string(), nullable=False)])


def codes(decoded):
    return [(b.index, b.code) for b in decoded.bad]


def test_a_json_object_key_becomes_its_fields_in_order_with_stable_types():
    decoded = KeyDecoder("json").decode([b'{"id": 1, "region": "eu", "vip": true}', b'{"id": 2, "region": "us",'
                                         b' "vip": false}'])
    assert decoded.bad == []
    assert decoded.table.schema == pa.schema([("id", pa.int64()), ("region", pa.string()), ("vip", pa.bool_())])
    assert decoded.table.to_pylist() == [{"id": 1, "region": "eu", "vip": True}, {"id": 2, "region": "us",
                                                                                   "vip": False}]


def test_kafka_connects_schema_and_payload_wrapper_is_taken_off():
    wrapped = json.dumps({"schema": {"type": "struct", "fields": [{"field": "id", "type": "int64"}]},
                          "payload": {"id": 7}}).encode()
    decoded = KeyDecoder("json").decode([wrapped, b'{"schema": null, "payload": {"id": 8}}'])
    assert decoded.table.to_pylist() == [{"id": 7}, {"id": 8}] and decoded.bad == []


def test_a_json_scalar_key_is_the_one_column_key():
    assert KeyDecoder("json").decode([b'"user-1"', b'"user-2"']).table.to_pylist() == [{"_key": "user-1"},
                                                                                      {"_key": "user-2"}]
    numbers = KeyDecoder("json").decode([b"5", b"-3"])
    assert numbers.table.schema == pa.schema([("_key", pa.int64())]) and numbers.table["_key"].to_pylist() == [5, -3]


def test_bad_json_keys_are_named_and_the_others_go_on():
    keys = [b'{"id": 1, "region": "eu"}', None, b"null", b'{"id": null, "region": "eu"}', b'{"region": "eu"}',
            b'{"id": {"a": 1}, "region": "eu"}', b'{"id": [1], "region": "eu"}', b"[1, 2]", b"{not json",
            b'{"id": 1.5, "region": "eu"}', b'{"id": 3, "region": "us"}', b"\xff\xfe", b"[" * 100_000]
    decoded = KeyDecoder("json").decode(keys)
    assert codes(decoded) == [
        (1, Reason.MISSING_KEY), (2, Reason.MISSING_KEY), (3, Reason.MISSING_KEY), (4, Reason.MISSING_KEY),
        (5, Reason.TYPE_MISMATCH), (6, Reason.TYPE_MISMATCH), (7, Reason.TYPE_MISMATCH), (8, Reason.MALFORMED_JSON),
        (9, Reason.TYPE_MISMATCH), (11, Reason.MALFORMED_JSON), (12, Reason.TOO_DEEP)]
    assert decoded.table.num_rows == len(keys)
    assert decoded.table["id"].to_pylist() == [1, *[None] * 9, 3, None, None]
    assert "'id'" in decoded.bad[3].reason  # names the column


def test_without_a_schema_records_disagreeing_with_the_first_valid_key_are_bad():
    decoded = KeyDecoder("json").decode([b"null", b'{"id": 1}', b'{"id": "1"}', b'{"id": 2, "x": 1}', b'"a"',
                                         b'{"id": 3}'])
    assert decoded.table.schema == pa.schema([("id", pa.int64())])
    assert decoded.table["id"].to_pylist() == [None, 1, None, None, None, 3]
    assert codes(decoded) == [(0, Reason.MISSING_KEY), (2, Reason.TYPE_MISMATCH), (3, Reason.INCOMPATIBLE_SCHEMA),
                              (4, Reason.INCOMPATIBLE_SCHEMA)]


def test_with_the_tables_key_a_value_that_does_not_fit_is_never_changed_into_another_key():
    schema = pa.schema([pa.field("id", pa.int32(), nullable=False), pa.field("region", pa.large_string())])
    decoded = KeyDecoder("json", schema=schema).decode([
        b'{"id": 1, "region": "eu"}', b'{"id": "2", "region": "eu"}', b'{"id": 3, "region": 4}',
        b'{"id": 5000000000, "region": "eu"}', b'{"id": true, "region": "eu"}', b'{"id": 6, "region": "eu", "z": 0}',
        b'{"id": 7}', b'{"region": "eu", "id": 8}'])
    assert decoded.table.schema == pa.schema([("id", pa.int32()), ("region", pa.large_string())])
    assert decoded.table["id"].to_pylist() == [1, None, None, None, None, None, None, 8]
    assert codes(decoded) == [(1, Reason.TYPE_MISMATCH), (2, Reason.TYPE_MISMATCH), (3, Reason.TYPE_MISMATCH),
                              (4, Reason.TYPE_MISMATCH), (5, Reason.INCOMPATIBLE_SCHEMA), (6, Reason.MISSING_KEY)]


def test_every_key_bad_without_a_schema_still_gives_one_row_per_key():
    decoded = KeyDecoder("json").decode([None, b"[]"])
    assert decoded.table.num_rows == 2 and codes(decoded) == [(0, Reason.MISSING_KEY), (1, Reason.TYPE_MISMATCH)]
    assert KeyDecoder("json").decode([]).table.num_rows == 0


def test_string_and_bytes_keys():
    text = KeyDecoder("string").decode([b"caf\xc3\xa9", None, b"\xff", b""])
    assert text.table.to_pylist() == [{"_key": "café"}, {"_key": None}, {"_key": None}, {"_key": ""}]
    assert codes(text) == [(1, Reason.MISSING_KEY), (2, Reason.TYPE_MISMATCH)]
    raw = KeyDecoder("bytes").decode([b"\x00\xff", None])
    assert raw.table.schema == pa.schema([("_key", pa.binary())])
    assert raw.table["_key"].to_pylist() == [b"\x00\xff", None] and codes(raw) == [(1, Reason.MISSING_KEY)]
    with pytest.raises(ValueError, match="_key"):
        KeyDecoder("string", schema=ID_REGION)


# --- Avro -------------------------------------------------------------------------------------------

KEY_RECORD = {"type": "record", "name": "Key", "fields": [{"name": "id", "type": "int"},
                                                          {"name": "region", "type": "string"}]}
WITH_ARRAY = {"type": "record", "name": "Bad", "fields": [{"name": "ids", "type": {"type": "array", "items": "long"}}]}


@pytest.fixture
def registry():
    registry = SchemaRegistry(f"mock://keys-{uuid.uuid4().hex[:8]}")
    client = registry._client  # the seam: registering is not tabletopic's business
    ids = {name: client.register_schema(f"{name}-key", Schema(json.dumps(schema), "AVRO"))
           for name, schema in (("record", KEY_RECORD), ("long", "long"), ("array", WITH_ARRAY))}
    return registry, ids


def wire(schema, value, schema_id):
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), value)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def test_an_avro_record_key_becomes_its_fields_and_a_primitive_the_one_column(registry):
    registry, ids = registry
    decoded = KeyDecoder("avro", registry).decode([wire(KEY_RECORD, {"id": 1, "region": "eu"}, ids["record"]),
                                                   wire(KEY_RECORD, {"id": 2, "region": "us"}, ids["record"])])
    assert decoded.table.schema == pa.schema([("id", pa.int64()), ("region", pa.string())])  # an int widens
    assert decoded.table.to_pylist() == [{"id": 1, "region": "eu"}, {"id": 2, "region": "us"}]
    primitive = KeyDecoder("avro", registry).decode([wire("long", 42, ids["long"])])
    assert primitive.table.to_pylist() == [{"_key": 42}] and primitive.bad == []


def test_bad_avro_keys_are_named(registry):
    registry, ids = registry
    good = wire(KEY_RECORD, {"id": 1, "region": "eu"}, ids["record"])
    decoded = KeyDecoder("avro", registry, schema=ID_REGION).decode([
        good, b'{"id": 1}', struct.pack(">bI", 0, 99999) + good[5:], good + b"\x00",
        wire(WITH_ARRAY, {"ids": [1]}, ids["array"]), wire("long", 42, ids["long"]), None, good[:6]])
    assert codes(decoded) == [(1, Reason.NOT_WIRE_FORMAT), (2, Reason.UNKNOWN_SCHEMA_ID), (3, Reason.UNDECODABLE_AVRO),
                              (4, Reason.TYPE_MISMATCH), (5, Reason.INCOMPATIBLE_SCHEMA), (6, Reason.MISSING_KEY),
                              (7, Reason.UNDECODABLE_AVRO)]
    assert decoded.bad[1].schema_id == 99999
    assert decoded.table["id"].to_pylist() == [1, *[None] * 7]


# --- the batch path against the reference ------------------------------------------------------------

NAMES = st.sampled_from(["id", "region", "schema", "payload", "_key"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.integers(-5, 5),
                    st.text(max_size=4), st.floats(allow_nan=False), st.just([1]), st.just({"a": 1}))
OBJECTS = st.dictionaries(NAMES, SCALARS, max_size=3)
JSON_KEYS = st.one_of(
    OBJECTS.map(lambda o: json.dumps(o).encode()),
    st.builds(lambda a, b: a + b, OBJECTS.map(lambda o: json.dumps(o).encode()),
              st.sampled_from([b"", b" ", b"x", b"\n", b"{}", b'\n{"id":1}'])),
    SCALARS.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"{", b"{\xff}", b'{"id": "\xff"}', b'{"id": "a\tb"}', b'{"id": "\\ud800"}', b"\xef\xbb\xbf{}",
                     b'{"id": 1, "id": 2}', b'{"id": 01}', b"", b" {}"]),
    st.none(),
)
SCHEMAS = st.sampled_from([None, pa.schema([("id", pa.int64())]), ID_REGION,
                           pa.schema([("id", pa.int32()), ("region", pa.large_string())]),
                           pa.schema([("_key", pa.string())]), pa.schema([("schema", pa.bool_())])])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(JSON_KEYS, max_size=8), schema=SCHEMAS)
def test_the_json_batch_path_equals_the_reference_key_by_key(keys, schema):
    decoder = KeyDecoder("json", schema=schema)
    assert_same(decoder.decode(keys), decoder.decode_each(keys))


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.one_of(st.none(), st.binary(max_size=4), st.text(max_size=3).map(str.encode)), max_size=8),
       key_format=st.sampled_from(["string", "bytes"]))
def test_the_string_and_bytes_batch_paths_equal_the_reference(keys, key_format):
    decoder = KeyDecoder(key_format)
    assert_same(decoder.decode(keys), decoder.decode_each(keys))


def assert_same(batch, reference):
    assert batch.table.schema == reference.table.schema
    assert batch.table.to_pylist() == reference.table.to_pylist()
    assert [(b.index, b.code, b.reason) for b in batch.bad] == [(b.index, b.code, b.reason) for b in reference.bad]


GOOD_OBJECTS = st.fixed_dictionaries({"id": st.one_of(st.integers(-(2**63), 2**63 - 1), st.none())},
                                     optional={"region": st.one_of(st.text(max_size=3), st.none())})


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.one_of(GOOD_OBJECTS.map(lambda o: json.dumps(o).encode()), st.none()), min_size=1,
                     max_size=8),
       schema=st.sampled_from([None, pa.schema([("id", pa.int64())]), ID_REGION]))
def test_the_json_batch_path_takes_good_keys_with_missing_fields_as_the_reference_does(keys, schema):
    decoder = KeyDecoder("json", schema=schema)
    assert_same(decoder.decode(keys), decoder.decode_each(keys))


def test_plain_object_keys_take_the_batch_path():
    decoder = KeyDecoder("json")
    keys = [json.dumps({"id": n, "region": "eu"}).encode() for n in range(100)] + [None]
    batch = decoder._json_batch(keys)
    assert batch is not None
    assert_same(batch, decoder.decode_each(keys))
