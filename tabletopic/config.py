"""tabletopic's configuration: YAML file, flags, and `TABLETOPIC_*` environment overrides.

Two sections pass through as they are, so users paste what they already know:
`kafka` (librdkafka settings, e.g. `bootstrap.servers`, `security.protocol`) and
`catalog` (pyiceberg catalog properties, e.g. `uri`, `type`, `s3.endpoint`), beside
tabletopic's own `name` and `warehouse`. Every other key is checked: an unknown key, a
wrong type or a missing required key raises ConfigError naming the key.

Environment overrides: `TABLETOPIC_<SECTION>__<KEY>`, e.g.
`TABLETOPIC_KAFKA__BOOTSTRAP_SERVERS` (kafka: `_` becomes `.`),
`TABLETOPIC_CATALOG__S3__ENDPOINT` (catalog: `__` becomes `.` and `_` becomes `-`, as in pyiceberg),
`TABLETOPIC_COMMIT__INTERVAL_SECONDS`, `TABLETOPIC_GROUP_ID`.

Secrets need not be inline: any value may say `${env:VAR}` or `${file:PATH}` (references.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tabletopic.core.limits import DEFAULT_MAX_ITEMS
from tabletopic.core.metadata import NAMES as METADATA_NAMES
from tabletopic.core.partition_terms import parse_term
from tabletopic.core.upsert_mode import KEY_COLUMN, UpsertMode
from tabletopic.exceptions import ConfigError
from tabletopic.references import SECRET_DIRS_ENV, allowed_dirs, file_reader, resolve
from tabletopic.secrets import hide_referenced, secrets_of

Format = Literal["json", "avro", "raw"]
FORMATS = ("json", "avro", "raw")
ErrorPolicy = Literal["dlq", "fail", "skip"]
JsonDrift = Literal["evolve", "strict", "ignore"]
ColumnNames = Literal["as_is", "lowercase"]
TableMode = Literal["append", "upsert"]
KeyFormat = Literal["json", "avro", "string", "bytes"]
Envelope = Literal["none", "debezium"]
# Kafka's own default limit is 1 MiB; a record far past it is more likely a mistake than data.
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024
ENV_PREFIX = "TABLETOPIC_"
# Variables of ours that are not config keys: the download cache, the config file, a worker's supervisor.
NOT_OVERRIDES = frozenset({"TABLETOPIC_CACHE", "TABLETOPIC_CONFIG", "TABLETOPIC_SUPERVISOR_PID", "TABLETOPIC_FAILPOINT",
                           SECRET_DIRS_ENV})

DEFAULT_WAREHOUSE = "warehouse"
DEFAULT_GROUP = "tabletopic"
# Iceberg readers pay per snapshot and per file; 30 s keeps both in check while data stays fresh.
DEFAULT_COMMIT_INTERVAL_S = 30.0
DEFAULT_MAX_BUFFER_BYTES = 128 * 1024 * 1024
# Below Kubernetes' default 30 s termination grace period, with room for the JVM-less exit.
DEFAULT_SHUTDOWN_TIMEOUT_S = 20.0


@dataclass
class CatalogConfig:
    name: str = "default"
    warehouse: str = DEFAULT_WAREHOUSE
    properties: dict[str, str] = field(default_factory=dict)  # pyiceberg catalog properties, as they are


@dataclass
class SchemaRegistryConfig:
    url: str | None = None
    properties: dict[str, str] = field(default_factory=dict)  # e.g. basic.auth.user.info


@dataclass
class CommitConfig:
    interval_seconds: float = DEFAULT_COMMIT_INTERVAL_S
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES  # per table: flush when its buffer reaches this
    # per process: flush the largest tables early, or pause consumption, at this many buffered bytes
    max_process_buffer_bytes: int = 2 * DEFAULT_MAX_BUFFER_BYTES
    # How long one flush retries conflicts and outages before the table backs off and polling goes
    # on; well below max.poll.interval.ms (300 s) so the worker is not thrown out of the group.
    retry_deadline_seconds: float = 30.0


@dataclass
class ConsumerConfig:
    # librdkafka hands back up to this many records per consume() call.
    batch_size: int = 10_000
    poll_timeout_seconds: float = 0.5
    # Where a partition starts when its table holds no offset for it yet.
    start: Literal["earliest", "latest"] = "earliest"


@dataclass
class TableConfig:
    table: str
    topics: list[str] = field(default_factory=list)
    topic: str | None = None
    # A regex the whole topic name must match: every matching topic (also ones created later) feeds
    # `table`, which may use `{topic}` (its safe name) to give each topic a table of its own.
    topic_pattern: str | None = None
    # JSON only: each record to the table its top-level `route_field` names in `route_tables`
    # (value -> NAMESPACE.TABLE); other values, and records without it, to `table`.
    route_field: str | None = None
    route_tables: dict[str, str] = field(default_factory=dict)
    format: Format = "json"
    partition_by: list[str] = field(default_factory=list)
    metadata_columns: bool = True
    properties: dict[str, str] = field(default_factory=dict)  # extra Iceberg table properties
    # A record that cannot become a row: kept in `<table>__dlq` (dlq), stops the writer (fail),
    # or is logged and left out (skip).
    errors: ErrorPolicy = "dlq"
    dead_letter_topic: str | None = None  # also produce dead letters to this Kafka topic
    # errors: dlq — more dead letters than this within a minute halt the table (None: no limit)
    max_dead_letters_per_minute: int | None = None
    json_drift: JsonDrift = "evolve"  # JSON fields the table does not have: add, dead-letter, or drop
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES  # larger values are dead letters (`oversized`)
    max_items: int = DEFAULT_MAX_ITEMS  # Avro: records with more array items and map entries are dead letters
    # Fields at any depth: a record whose new fields would pass either cap is a dead letter (`too_many_columns`).
    max_columns: int = 1000
    max_new_columns_per_batch: int = 100
    commit_interval_seconds: float | None = None  # this table's own commit.interval_seconds
    target_file_size_bytes: int | None = None  # this table's own maintenance.target_file_size_bytes
    column_names: ColumnNames = "as_is"  # `lowercase`: field names folded, so userId and UserID are one column
    # Top-level value fields under another column name (source field -> column); after `column_names` folding.
    rename_columns: dict[str, str] = field(default_factory=dict)
    # `upsert`: the table holds the latest value per key, a tombstone deletes its key (docs/upsert.md).
    # None: upsert with `envelope: debezium`, else append.
    mode: TableMode | None = None
    key: list[str] = field(default_factory=list)  # upsert: key columns of the value; empty: the Kafka key
    key_format: KeyFormat | None = None  # how the Kafka key is decoded; None: as the value (raw: bytes)
    envelope: Envelope = "none"  # `debezium`: values are Debezium change events (JSON)
    # Debezium: extra columns for the change's `op`, `source.ts_ms` and `source.lsn`, named here.
    cdc_columns: dict[str, str] = field(default_factory=dict)

    @property
    def all_topics(self) -> list[str]:
        return ([self.topic] if self.topic else []) + [t for t in self.topics if t != self.topic]

    @property
    def is_upsert(self) -> bool:
        return self.mode == "upsert" or (self.mode is None and self.envelope == "debezium")

    @property
    def upsert(self) -> UpsertMode | None:
        """What the table's properties record of its upsert settings; None in append mode."""
        if not self.is_upsert:
            return None
        key_format = self.key_format or ("bytes" if self.format == "raw" else self.format)
        return UpsertMode("value" if self.key else "kafka-key", key_format, self.envelope)


@dataclass
class MaintenanceConfig:
    enabled: bool = True  # a maintenance process beside the writers (compaction/scheduler.py)
    check_interval_seconds: float = 60.0
    target_file_size_bytes: int = 512 * 1024 * 1024
    min_small_files: int = 50  # compact a table once its current snapshot has this many small files
    max_manifests: int = 100  # merge the manifest listing once the current snapshot has this many
    max_delete_files: int = 50  # compact an upsert table once its current snapshot has this many equality deletes
    expire_interval_seconds: float = 3600.0
    expire_older_than_hours: float = 24.0
    keep_snapshots: int = 100
    orphans_interval_seconds: float = 86400.0
    orphans_older_than_hours: float = 24.0  # a younger unreferenced file may be a commit in flight


@dataclass
class HttpConfig:
    enabled: bool = True  # /healthz, /readyz and /metrics
    host: str = "0.0.0.0"
    port: int = 8080
    # /healthz fails once a worker's loop has not turned for this long (a commit may hold one turn
    # for commit.retry_deadline_seconds).
    stall_seconds: float = 120.0
    # A connection has this long for its request and answer, then it is cut; past max_connections at once,
    # new connections get a 503 from the accepting thread (no thread of their own).
    request_timeout_seconds: float = 5.0
    max_connections: int = 16


@dataclass
class Config:
    kafka: dict[str, str] = field(default_factory=dict)
    group_id: str = DEFAULT_GROUP
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    schema_registry: SchemaRegistryConfig = field(default_factory=SchemaRegistryConfig)
    commit: CommitConfig = field(default_factory=CommitConfig)
    consumer: ConsumerConfig = field(default_factory=ConsumerConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    shutdown_timeout_seconds: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    workers: int | None = None  # worker processes; None: one per CPU the process may use (default_workers)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    tables: list[TableConfig] = field(default_factory=list)
    http: HttpConfig = field(default_factory=HttpConfig)
    # Not a key: every value that came from `${env:}`/`${file:}` or sits under a secret-looking key,
    # so the logs can mask it.
    secret_values: frozenset[str] = field(default=frozenset(), init=False)


# --- building typed config from plain data ---------------------------------------------------

_CATALOG_OWN_KEYS = {"name", "warehouse"}


def _check_scalar(value: Any, kind: Any, key: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(key, f"expected a string, got {value!r}")
    raise AssertionError(f"unsupported config type {kind}")


def _convert(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        return _convert(value, next(a for a in args if a is not type(None)), key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {value!r}")
        return [_convert(item, args[0], f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return {str(k): _check_scalar(v, str, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, key)
    return _check_scalar(value, kind, key)


def _build(cls: Any, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or "config", f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    passthrough: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if cls is CatalogConfig and key not in _CATALOG_OWN_KEYS and key != "properties":
            passthrough[str(key)] = _check_scalar(value, str, path)
            continue
        if key not in known:
            raise ConfigError(path, "unknown key")
        values[key] = _convert(value, hints[key], path)
    if passthrough:
        values["properties"] = {**values.get("properties", {}), **passthrough}
    for name, spec in known.items():
        if name not in values and spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}.{name}" if prefix else name, "required")
    return cls(**values)



def table_config_from(data: Mapping[str, Any], where: str) -> TableConfig:
    """A table's settings as a mapping (its YAML, or what a table records of them) → TableConfig."""
    table: TableConfig = _build(TableConfig, data, where)
    return table

def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`TABLETOPIC_*` variables as a nested mapping to merge over the file."""
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_OVERRIDES:
            continue
        parts = name[len(ENV_PREFIX):].split("__")
        section = parts[0].lower()
        if section == "kafka" and len(parts) >= 2:
            key = ".".join(p.lower().replace("_", ".") for p in parts[1:])
            overrides.setdefault("kafka", {})[key] = value
        elif section == "catalog" and len(parts) >= 2:
            own = parts[1].lower()
            key = own if own in _CATALOG_OWN_KEYS else ".".join(p.lower().replace("_", "-") for p in parts[1:])
            overrides.setdefault("catalog", {})[key] = value
        else:
            target = overrides
            for part in [p.lower() for p in parts[:-1]]:
                target = target.setdefault(part, {})
            target[parts[-1].lower()] = value
    return overrides


def load_config(
    path: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """File, then environment, then flags (highest); validated as a whole."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError("--config", f"{path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, Mapping):
            raise ConfigError("--config", f"{path} must hold a mapping at the top")
        data = dict(loaded or {})
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    data = _merge(data, flags or {})
    environ = os.environ if environ is None else environ
    data, referenced = resolve(data, environ, file_reader(allowed_dirs(environ, path)))
    try:
        config: Config = _build(Config, data, "")
        validate(config)
    except ConfigError as exc:
        # A typed key's error shows the value it got: never one that came from a reference.
        raise ConfigError(exc.key, hide_referenced(exc.reason, referenced)) from None
    config.secret_values = frozenset(set(referenced) | _values_under_secret_keys(config))
    return config


def _values_under_secret_keys(config: Config) -> set[str]:
    """Values under secret-looking keys, and credentials inside any value (a URL's password, `?token=`)."""
    sections = [config.kafka, config.catalog.properties, config.schema_registry.properties]
    return secrets_of(sections, [config.schema_registry.url])


def validate(config: Config) -> None:
    """Checks across keys that the types alone do not catch."""
    if not config.kafka.get("bootstrap.servers"):
        raise ConfigError("kafka.bootstrap.servers", "required")
    if not config.tables:
        raise ConfigError("tables", "required: at least one table (or --topic and --table)")
    seen: dict[str, str] = {}
    for index, table in enumerate(config.tables):
        key = f"tables[{index}]"
        if table.table.count(".") < 1:
            raise ConfigError(f"{key}.table", f"expected NAMESPACE.TABLE, got {table.table!r}")
        if table.topic_pattern is not None:
            try:
                re.compile(table.topic_pattern)
            except re.error as exc:
                raise ConfigError(f"{key}.topic_pattern", f"not a regex: {exc}") from None
        elif "{topic}" in table.table:
            raise ConfigError(f"{key}.table", "{topic} in a table name needs topic_pattern")
        if not table.all_topics and table.topic_pattern is None:
            raise ConfigError(f"{key}.topic", "required: the topic (or topics, or topic_pattern) this table reads")
        for topic in table.all_topics:
            if topic in seen:
                raise ConfigError(f"{key}.topic", f"topic {topic!r} already feeds {seen[topic]}")
            seen[topic] = table.table
        if table.route_tables and table.route_field is None:
            raise ConfigError(f"{key}.route_field", "required by route_tables")
        if table.route_field is not None:
            if table.format != "json":
                raise ConfigError(f"{key}.route_field", f"routing by field needs format json (is {table.format})")
            if not table.metadata_columns:
                raise ConfigError(f"{key}.metadata_columns", "routed tables need them: each row's offset")
            for target in table.route_tables.values():
                if target.count(".") < 1:
                    raise ConfigError(f"{key}.route_tables", f"expected NAMESPACE.TABLE, got {target!r}")
        if table.commit_interval_seconds is not None and table.commit_interval_seconds <= 0:
            raise ConfigError(f"{key}.commit_interval_seconds", "must be above 0")
        if table.target_file_size_bytes is not None and table.target_file_size_bytes <= 0:
            raise ConfigError(f"{key}.target_file_size_bytes", "must be above 0")
        if table.max_record_bytes <= 0:
            raise ConfigError(f"{key}.max_record_bytes", "must be above 0")
        if table.max_items <= 0:
            raise ConfigError(f"{key}.max_items", "must be above 0")
        for cap in ("max_columns", "max_new_columns_per_batch"):
            if getattr(table, cap) <= 0:
                raise ConfigError(f"{key}.{cap}", "must be above 0")
        if table.dead_letter_topic is not None and table.errors != "dlq":
            raise ConfigError(f"{key}.dead_letter_topic", f"needs errors: dlq (is {table.errors})")
        if table.max_dead_letters_per_minute is not None:
            if table.errors != "dlq":
                raise ConfigError(f"{key}.max_dead_letters_per_minute", f"needs errors: dlq (is {table.errors})")
            if table.max_dead_letters_per_minute <= 0:
                raise ConfigError(f"{key}.max_dead_letters_per_minute", "must be above 0")
            if table.route_field is not None:  # a halt re-reads the partition for every routed sibling
                raise ConfigError(f"{key}.max_dead_letters_per_minute", "is not supported with route_field")
        if table.format == "avro" and not config.schema_registry.url:
            raise ConfigError("schema_registry.url", f"required by {key} (format avro)")
        for term_index, term in enumerate(table.partition_by):
            try:
                parse_term(term)
            except ValueError as exc:
                raise ConfigError(f"{key}.partition_by[{term_index}]", str(exc)) from None
        _validate_renames(table, key)
        _validate_upsert(table, key)
    if config.commit.interval_seconds <= 0:
        raise ConfigError("commit.interval_seconds", "must be above 0")
    if config.commit.max_buffer_bytes <= 0:
        raise ConfigError("commit.max_buffer_bytes", "must be above 0")
    if config.commit.max_process_buffer_bytes <= 0:
        raise ConfigError("commit.max_process_buffer_bytes", "must be above 0")
    if config.maintenance.target_file_size_bytes <= 0:
        raise ConfigError("maintenance.target_file_size_bytes", "must be above 0")
    if config.maintenance.max_manifests < 2:
        raise ConfigError("maintenance.max_manifests", "must be 2 or more")
    if config.maintenance.max_delete_files < 1:
        raise ConfigError("maintenance.max_delete_files", "must be 1 or more")
    if config.maintenance.min_small_files < 2:
        raise ConfigError("maintenance.min_small_files", "must be 2 or more")
    if config.maintenance.orphans_older_than_hours < 1:
        raise ConfigError("maintenance.orphans_older_than_hours", "must be 1 or more: younger files may be in flight")
    if config.consumer.batch_size <= 0:
        raise ConfigError("consumer.batch_size", "must be above 0")
    if not 0 <= config.http.port <= 65535:
        raise ConfigError("http.port", f"expected 0-65535, got {config.http.port}")
    if config.http.request_timeout_seconds <= 0:
        raise ConfigError("http.request_timeout_seconds", "must be above 0")
    if config.http.max_connections < 1:
        raise ConfigError("http.max_connections", "must be 1 or more")
    if "enable.auto.commit" in config.kafka and config.kafka["enable.auto.commit"].lower() != "false":
        raise ConfigError("kafka.enable.auto.commit", "must stay false: offsets live in the table")


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
    if table.envelope == "debezium" and table.format == "raw":
        raise ConfigError(f"{key}.envelope", "debezium envelopes are read from json or avro values (format is raw)")
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


# --- the default number of workers -----------------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")


def default_workers() -> int:
    """One worker per CPU the process may run on: not os.cpu_count(), which counts the whole node
    (64 on a 64-core node for a pod limited to 2 CPUs)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    try:
        own = Path("/proc/self/cgroup").read_text()
    except OSError:
        own = ""
    return usable_cpus(affinity, cgroup_cpu_limits(own, _read_or_none))


def usable_cpus(affinity: int, cpu_limits: Iterable[str]) -> int:
    """The CPUs the process may use: its affinity, capped by every CPU quota over it (cgroup v2 `cpu.max`
    contents, "QUOTA PERIOD" or "max PERIOD", rounded up to whole CPUs); at least 1."""
    cpus = [affinity]
    for text in cpu_limits:
        fields = text.split()
        if len(fields) != 2 or not all(f.lstrip("-").isdigit() for f in fields):
            continue  # "max PERIOD": no quota
        quota, period = int(fields[0]), int(fields[1])
        if quota > 0 and period > 0:
            cpus.append(math.ceil(quota / period))
    return max(1, min(cpus))


def cgroup_cpu_limits(proc_self_cgroup: str, read: Callable[[Path], str | None],
                      root: Path = CGROUP_ROOT) -> list[str]:
    """The CPU quotas over the process, as `cpu.max` texts: its own cgroup's and every ancestor's (a parent's
    quota binds too). `proc_self_cgroup`: the contents of /proc/self/cgroup. cgroup v1's CFS quota files
    are read as the same "QUOTA PERIOD" (a quota of -1 is none)."""
    limits = []
    for line in proc_self_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # v2, unified
            for folder in _up_from(root, path):
                text = read(folder / "cpu.max")
                if text is not None:
                    limits.append(text.strip())
        elif "cpu" in controllers.split(","):  # v1
            mount = root / controllers  # e.g. /sys/fs/cgroup/cpu,cpuacct
            for folder in _up_from(mount, path):
                quota, period = read(folder / "cpu.cfs_quota_us"), read(folder / "cpu.cfs_period_us")
                if quota is not None and period is not None:
                    limits.append(f"{quota.strip()} {period.strip()}")
    return limits


def _up_from(mount: Path, path: str) -> list[Path]:
    """`mount/path` and each of its parents up to `mount` (in a container's own cgroup namespace, path is /)."""
    parts = [p for p in path.strip().split("/") if p]
    return [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
