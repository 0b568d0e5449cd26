"""Checks across config keys that the types alone do not catch; each names the key it refuses."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from tabletopic.core.columns import NAMES as METADATA_NAMES
from tabletopic.core.partition_terms import parse_term
from tabletopic.core.upsert_mode import KEY_COLUMN
from tabletopic.exceptions import ConfigError

if TYPE_CHECKING:
    from tabletopic.config import Config, TableConfig

Need = Literal["kafka", "tables", "registry"]
Needs = frozenset[Need]

# NAMESPACE.TABLE (namespaces may nest): no empty part, no blank or control character anywhere.
_TABLE_NAME = re.compile(r"[^\s.\x00-\x1f]+(\.[^\s.\x00-\x1f]+)+")


def table_name_problem(name: str) -> str | None:
    """Why `name` is no NAMESPACE.TABLE (`shop..orders`, `shop.`, `my table`), or None."""
    if _TABLE_NAME.fullmatch(name):
        return None
    if any(c.isspace() or ord(c) < 0x20 for c in name):
        return f"expected NAMESPACE.TABLE without blanks, got {name!r}"
    return f"expected NAMESPACE.TABLE (no empty part), got {name!r}"


def validate(config: Config, needs: Needs) -> None:
    if "kafka" in needs and not config.kafka.get("bootstrap.servers"):
        raise ConfigError("kafka.bootstrap.servers", "required")
    if "tables" in needs and not config.tables:
        raise ConfigError("tables", "required: at least one table (or --topic and --table)")
    if "enable.auto.commit" in config.kafka and config.kafka["enable.auto.commit"].lower() != "false":
        raise ConfigError("kafka.enable.auto.commit", "must stay false: offsets live in the table")
    seen: dict[str, str] = {}
    for index, table in enumerate(config.tables):
        key = f"tables[{index}]"
        _validate_table(table, key)
        for topic in table.all_topics:
            if topic in seen:
                raise ConfigError(f"{key}.topic", f"topic {topic!r} already feeds {seen[topic]}")
            seen[topic] = table.table
        if "registry" in needs and (table.format in ("avro", "protobuf") or table.json_schema) \
                and not config.schema_registry.url:
            kind = "json_schema: true" if table.json_schema else f"format {table.format}"
            raise ConfigError("schema_registry.url", f"required by {key} ({kind})")


def _validate_table(table: TableConfig, key: str) -> None:
    problem = table_name_problem(table.table)
    if problem is not None:
        raise ConfigError(f"{key}.table", problem)
    if table.topic_pattern is not None:
        try:
            re.compile(table.topic_pattern)
        except re.error as exc:
            raise ConfigError(f"{key}.topic_pattern", f"not a regex: {exc}") from None
    elif "{topic}" in table.table:
        raise ConfigError(f"{key}.table", "{topic} in a table name needs topic_pattern")
    if not table.all_topics and table.topic_pattern is None:
        raise ConfigError(f"{key}.topic", "required: the topic (or topics, or topic_pattern) this table reads")
    if table.route_tables and table.route_field is None:
        raise ConfigError(f"{key}.route_field", "required by route_tables")
    if table.route_field is not None:
        if table.format != "json":
            raise ConfigError(f"{key}.route_field", f"routing by field needs format json (is {table.format})")
        if not table.metadata_columns:
            raise ConfigError(f"{key}.metadata_columns", "routed tables need them: each row's offset")
        for value, target in table.route_tables.items():
            problem = table_name_problem(target)
            if problem is not None:
                raise ConfigError(f"{key}.route_tables.{value}", problem)
    if table.dead_letter_topic is not None and table.errors != "dlq":
        raise ConfigError(f"{key}.dead_letter_topic", f"needs errors: dlq (is {table.errors})")
    if table.max_dead_letters_per_minute is not None:
        if table.errors != "dlq":
            raise ConfigError(f"{key}.max_dead_letters_per_minute", f"needs errors: dlq (is {table.errors})")
        if table.route_field is not None:  # a halt re-reads the partition for every routed sibling
            raise ConfigError(f"{key}.max_dead_letters_per_minute", "is not supported with route_field")
    for term_index, term in enumerate(table.partition_by):
        try:
            parse_term(term)
        except ValueError as exc:
            raise ConfigError(f"{key}.partition_by[{term_index}]", str(exc)) from None
    _validate_json_schema(table, key)
    _validate_renames(table, key)
    _validate_upsert(table, key)


def _validate_json_schema(table: TableConfig, key: str) -> None:
    if not table.json_schema:
        return
    if table.format != "json":
        raise ConfigError(f"{key}.json_schema", f"a registered JSON Schema types JSON values (format is "
                                                f"{table.format})")
    if table.envelope != "none":
        raise ConfigError(f"{key}.json_schema", "not with envelope: debezium (its JSON is read without a schema id)")
    if table.route_field is not None:
        raise ConfigError(f"{key}.route_field", "routing reads plain JSON values, not a JSON Schema's framed ones")
    for setting in ("rename_columns", "column_names"):
        if getattr(table, setting) not in ({}, "as_is"):
            raise ConfigError(f"{key}.{setting}", "not applied to a registered JSON Schema's columns, which keep the "
                                                  "schema's names: leave it out with json_schema: true")


CDC_COLUMNS = ("op", "source_ts_ms", "lsn")


def _validate_renames(table: TableConfig, key: str) -> None:
    """`rename_columns`: each field onto a column of its own, never a metadata column; the key names the columns."""
    if not table.rename_columns:
        return
    where = f"{key}.rename_columns"
    if table.format == "raw":
        raise ConfigError(where, f"{table.table}: a raw value has no fields to rename (format is raw)")
    lowercase = table.column_names == "lowercase"
    sources: dict[str, str] = {}  # as matched (folded with lowercase) -> as written
    for source in table.rename_columns:
        folded = source.lower() if lowercase else source
        if folded in sources:
            raise ConfigError(where, f"{table.table}: {sources[folded]!r} and {source!r} are one field once "
                                     "folded (column_names: lowercase)")
        sources[folded] = source
    targets: dict[str, str] = {}
    for source, target in table.rename_columns.items():
        if not source or not target.strip():
            raise ConfigError(f"{where}.{source}", f"{table.table}: an empty name ({source!r} -> {target!r})")
        if target in METADATA_NAMES:
            raise ConfigError(f"{where}.{source}", f"{table.table}: {target} is a Kafka metadata column")
        if target in table.cdc_columns.values():
            raise ConfigError(f"{where}.{source}", f"{table.table}: {target} is a cdc_columns column")
        if target == KEY_COLUMN and table.upsert is not None and table.upsert.key_format in ("string", "bytes"):
            raise ConfigError(f"{where}.{source}", f"{table.table}: {target} is the Kafka key's column")
        if target in sources or target == source:
            raise ConfigError(f"{where}.{source}", f"{table.table}: {target!r} is itself a renamed field: rename "
                                                   "each field straight to its column")
        if target in targets:
            raise ConfigError(f"{where}.{source}", f"{table.table}: {targets[target]!r} and {source!r} would both "
                                                   f"become column {target!r}")
        targets[target] = source
    for column in table.key:
        renamed = sources.get(column.lower() if lowercase else column)
        if renamed is not None:
            raise ConfigError(f"{key}.key", f"{table.table}: {column!r} is renamed to "
                                            f"{table.rename_columns[renamed]!r} by rename_columns: the key names "
                                            "the renamed column")


def _validate_upsert(table: TableConfig, key: str) -> None:
    if table.mode == "append" and table.envelope == "debezium":
        raise ConfigError(f"{key}.mode", "envelope debezium makes the table the current state: mode upsert")
    for name in table.cdc_columns:
        if name not in CDC_COLUMNS:
            raise ConfigError(f"{key}.cdc_columns.{name}", f"unknown: expected {', '.join(CDC_COLUMNS)}")
    if table.cdc_columns and table.envelope != "debezium":
        raise ConfigError(f"{key}.cdc_columns", "needs envelope: debezium")
    if table.envelope == "debezium" and table.format in ("raw", "protobuf"):
        raise ConfigError(f"{key}.envelope", f"debezium envelopes are read from json or avro values (format is "
                                             f"{table.format})")
    if not table.is_upsert:
        for name in ("key", "key_format"):
            if getattr(table, name):
                raise ConfigError(f"{key}.{name}", "needs mode: upsert")
        return
    if not table.metadata_columns:
        raise ConfigError(f"{key}.metadata_columns", "an upsert table needs them: each row's partition and offset")
    if table.route_field is not None:
        raise ConfigError(f"{key}.route_field", "an upsert table reads one topic, unrouted")
    if len(table.all_topics) > 1:
        raise ConfigError(f"{key}.topics", "an upsert table reads one topic: Kafka orders a key's changes only "
                                           "within its topic")
    if table.topic_pattern is not None and "{topic}" not in table.table:
        raise ConfigError(f"{key}.table", "an upsert table fed by topic_pattern needs {topic} in its name "
                                          "(one table per topic)")
    if table.column_names == "lowercase" and table.upsert is not None and table.upsert.key_format == "avro" \
            and not table.key:
        raise ConfigError(f"{key}.column_names", "lowercase is not applied to Avro keys: key by value columns "
                                                 "(key: [...]) or keep as_is")
    if table.format == "protobuf" and not table.key_format:
        raise ConfigError(f"{key}.key_format", "Protobuf keys are not read yet: say json, avro, string or bytes")
    if table.format == "raw" and table.key:
        raise ConfigError(f"{key}.key", "a raw value has no columns: leave key out to key by the Kafka key")
    if table.envelope == "debezium" and table.key:
        raise ConfigError(f"{key}.key", "a Debezium table is keyed by the Kafka key (the source's primary key)")
    if len(set(table.key)) != len(table.key):
        raise ConfigError(f"{key}.key", "names a column twice")
    for column in table.key:
        if column in METADATA_NAMES:
            raise ConfigError(f"{key}.key", f"{column} is a Kafka metadata column, not a key")
    key_columns = set(table.key) if table.key else None  # None: the Kafka key's fields, known once decoded
    for term_index, term in enumerate(table.partition_by):
        source = parse_term(term).column
        allowed = key_columns if key_columns is not None else (
            {KEY_COLUMN} if table.upsert is not None and table.upsert.key_format in ("string", "bytes") else None)
        if allowed is not None and source not in allowed:
            raise ConfigError(f"{key}.partition_by[{term_index}]", unscoped_partition(term, sorted(allowed)))


def unscoped_partition(term: str, key_columns: list[str]) -> str:
    example = f"bucket(16, {key_columns[0]})" if key_columns else "bucket(16, <key column>)"
    return (f"{term} is not computed from the key ({', '.join(key_columns)}): an equality delete in one partition "
            f"would miss the key's rows in the others. Partition by a key column, e.g. {example}, or not at all")


