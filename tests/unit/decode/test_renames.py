"""rename_columns: top-level fields renamed before they meet the table (decode/renames.py)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.renames import (
    RenameCollision,
    column_renames,
    rename_json,
    rename_record,
    renamed_json_chunk,
    renamed_json_keys,
    renamed_schema,
    source_names,
    source_schema,
)

RENAMES = {"user_id": "uid", "amt": "amount"}


def chunk(values: list[bytes | None], keys: list[bytes | None] | None = None) -> RecordChunk:
    n = len(values)
    return RecordChunk("t", 0, list(range(n)), keys or [None] * n, values, [0] * n, [None] * n)


def test_top_level_keys_are_renamed_and_every_other_byte_is_kept() -> None:
    value = b'{"user_id": 7, "amt": 12345678901234567890.123456789, "nested": {"user_id": 1}, "s": "amt"}'
    assert rename_json(value, RENAMES) == (
        b'{"uid": 7, "amount": 12345678901234567890.123456789, "nested": {"user_id": 1}, "s": "amt"}')


def test_pretty_printed_and_escaped_keys_are_renamed() -> None:
    value = json.dumps({"user\u005fid": 1, "other": [1, {"amt": 2}]}, indent=2).encode()
    assert json.loads(rename_json(value, RENAMES)) == {"uid": 1, "other": [1, {"amt": 2}]}
    escaped = b'{"user\\u005fid": 3}'
    assert json.loads(rename_json(escaped, RENAMES)) == {"uid": 3}


def test_a_value_with_a_renamed_field_and_its_target_is_a_collision_naming_both() -> None:
    with pytest.raises(RenameCollision) as caught:
        rename_json(b'{"user_id": 1, "uid": 2}', RENAMES)
    assert "'user_id'" in str(caught.value) and "'uid'" in str(caught.value)


def test_the_target_alone_or_nested_is_no_collision() -> None:
    assert rename_json(b'{"uid": 2}', RENAMES) == b'{"uid": 2}'
    assert rename_json(b'{"user_id": 1, "x": {"uid": 2}}', RENAMES) == b'{"uid": 1, "x": {"uid": 2}}'


@pytest.mark.parametrize("value", [b"not json", b"[1,2]", b'{"user_id": 1', b'{"user_id": 1,}',
                                   b"\xff\xfe", b"", b'{"user_id" 1}', b'"user_id"'])
def test_what_is_not_one_object_is_left_to_the_decoder(value: bytes) -> None:
    assert rename_json(value, RENAMES) == value


def test_two_objects_in_one_value_keep_the_second_as_it_came() -> None:
    assert rename_json(b'{"user_id":1} {"user_id":2}', RENAMES) == b'{"uid":1} {"user_id":2}'


def test_a_chunk_renames_its_good_values_and_dead_letters_collisions() -> None:
    values = [b'{"user_id": 1}', b'{"user_id": 1, "uid": 2}', None, b'{"amt": 3}', b'{"user_id": 9}']
    renamed, bad = renamed_json_chunk(chunk(values), RENAMES, skip={4})
    assert renamed.values == [b'{"uid": 1}', values[1], None, b'{"amount": 3}', values[4]]
    assert [(b.index, b.code) for b in bad] == [(1, Reason.RENAME_COLLISION)]
    assert "'user_id'" in bad[0].reason and "'uid'" in bad[0].reason


def test_json_keys_are_renamed_also_inside_a_connect_wrapper() -> None:
    keys: list[bytes | None] = [b'{"user_id": 1}', b'{"schema": {"type": "struct"}, "payload": {"user_id": 2}}',
                                b'{"user_id": 1, "uid": 1}', None]
    renamed, bad = renamed_json_keys(chunk([b"{}"] * 4, keys), RENAMES, skip=set())
    assert json.loads(renamed.keys[0]) == {"uid": 1}  # type: ignore[arg-type]
    assert json.loads(renamed.keys[1]) == {"schema": {"type": "struct"}, "payload": {"uid": 2}}  # type: ignore[arg-type]
    assert renamed.keys[3] is None
    assert [(b.index, b.code) for b in bad] == [(2, Reason.RENAME_COLLISION)]


def test_schemas_and_records_are_renamed_at_the_top_only() -> None:
    schema = pa.schema([("user_id", pa.int64()), ("inner", pa.struct([("amt", pa.int64())]))])
    assert renamed_schema(schema, RENAMES).names == ["uid", "inner"]
    assert renamed_schema(schema, RENAMES).field("inner").type == schema.field("inner").type
    assert source_schema(renamed_schema(schema, RENAMES), RENAMES).equals(schema)
    assert source_names(["uid", "x"], RENAMES) == ["user_id", "x"]
    assert rename_record({"user_id": 1, "inner": {"amt": 2}}, RENAMES) == {"uid": 1, "inner": {"amt": 2}}
    with pytest.raises(RenameCollision):
        renamed_schema(pa.schema([("user_id", pa.int64()), ("uid", pa.int64())]), RENAMES)
    with pytest.raises(RenameCollision):
        rename_record({"amt": 1, "amount": 2}, RENAMES)


def test_with_lowercase_the_sources_are_folded() -> None:
    assert column_renames({"UserId": "user"}, lowercase=True) == {"userid": "user"}
    assert column_renames({"UserId": "user"}, lowercase=False) == {"UserId": "user"}


names = st.sampled_from(["user_id", "uid", "amt", "amount", "x", "é", 'q"t', "a\\b"])
objects = st.dictionaries(names, st.none() | st.integers() | st.text(max_size=3) | st.lists(st.integers(), max_size=2)
                          | st.dictionaries(names, st.integers(), max_size=2), max_size=5)


@settings(max_examples=300, deadline=None)
@given(objects, st.booleans(), st.sampled_from([None, 1, "\t"]))
def test_the_text_rename_equals_renaming_the_parsed_object(obj: dict[str, Any], ascii_only: bool,
                                                           indent: int | str | None) -> None:
    value = json.dumps(obj, ensure_ascii=ascii_only, indent=indent).encode()
    try:
        expected = rename_record(obj, RENAMES)
    except RenameCollision:
        with pytest.raises(RenameCollision):
            rename_json(value, RENAMES)
        return
    assert json.loads(rename_json(value, RENAMES)) == expected
