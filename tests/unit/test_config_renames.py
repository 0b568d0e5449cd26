"""`rename_columns` in a table's config: parsed, and refused where it would merge, hide or miss a column."""

from __future__ import annotations

from typing import Any

import pytest

from tabletopic.config import load_config
from tabletopic.exceptions import ConfigError


def config_with(**table: Any) -> Any:
    flags = {"kafka": {"bootstrap.servers": "127.0.0.1:9092"}, "schema_registry": {"url": "mock://r"},
             "tables": [{"table": "ns.events", "topic": "events", **table}]}
    return load_config(None, flags, environ={})


def refused(**table: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        config_with(**table)
    assert "ns.events" in str(caught.value)
    return caught.value


def test_the_mapping_is_parsed_as_written() -> None:
    spec = config_with(rename_columns={"user_id": "uid", "amt": "amount"}).tables[0]
    assert spec.rename_columns == {"user_id": "uid", "amt": "amount"}
    assert config_with().tables[0].rename_columns == {}


def test_a_mapping_of_anything_but_names_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(rename_columns=["user_id"])
    assert caught.value.key == "tables[0].rename_columns"


def test_two_fields_onto_one_column_are_refused_naming_both() -> None:
    error = refused(rename_columns={"a": "x", "b": "x"})
    assert "'a'" in str(error) and "'b'" in str(error) and "'x'" in str(error)


def test_a_target_that_is_itself_renamed_is_refused() -> None:
    assert refused(rename_columns={"a": "b", "b": "c"}).key == "tables[0].rename_columns.a"
    refused(rename_columns={"a": "a"})


@pytest.mark.parametrize("target", ["", " ", "_kafka_offset", "_kafka_key", "_kafka_headers"])
def test_empty_and_metadata_targets_are_refused(target: str) -> None:
    refused(rename_columns={"a": target})


def test_an_empty_source_is_refused() -> None:
    refused(rename_columns={"": "x"})


def test_a_raw_table_has_nothing_to_rename() -> None:
    assert "raw" in str(refused(format="raw", rename_columns={"a": "b"}))


def test_renames_onto_cdc_columns_or_a_string_key_column_are_refused() -> None:
    refused(envelope="debezium", cdc_columns={"op": "change"}, rename_columns={"a": "change"})
    refused(mode="upsert", key_format="string", rename_columns={"a": "_key"})


def test_the_upsert_key_names_renamed_columns() -> None:
    spec = config_with(mode="upsert", key=["uid"], rename_columns={"user_id": "uid"}).tables[0]
    assert spec.key == ["uid"]
    error = refused(mode="upsert", key=["user_id"], rename_columns={"user_id": "uid"})
    assert error.key == "tables[0].key" and "'user_id'" in str(error) and "'uid'" in str(error)


def test_with_lowercase_sources_are_matched_folded() -> None:
    refused(column_names="lowercase", rename_columns={"UserId": "a", "userid": "b"})
    refused(column_names="lowercase", rename_columns={"UserId": "x", "y": "userid"})
    refused(column_names="lowercase", mode="upsert", key=["userid"], rename_columns={"UserId": "uid"})
    assert config_with(column_names="lowercase", rename_columns={"UserId": "uid"}).tables[0].rename_columns
