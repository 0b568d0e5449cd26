"""tabletopic's configuration: YAML file, flags, and `TABLETOPIC_*` environment overrides.

The settings are a typed model (pydantic dataclasses): an unknown key (with the nearest known one
suggested), a wrong type or a missing required key raises ConfigError naming the key. Its JSON Schema
(`config_json_schema`) generates docs/configuration.md and the Helm chart's values.schema.json.

Two sections pass through as they are, so users paste what they already know:
`kafka` (librdkafka settings, e.g. `bootstrap.servers`, `security.protocol`) and
`catalog` (pyiceberg catalog properties, e.g. `uri`, `type`, `s3.endpoint`), beside
tabletopic's own `name` and `warehouse`. Their values under secret-looking keys become SecretValue.

Environment overrides: `TABLETOPIC_<SECTION>__<KEY>`, e.g.
`TABLETOPIC_KAFKA__BOOTSTRAP_SERVERS` (kafka: `_` becomes `.`),
`TABLETOPIC_CATALOG__S3__ENDPOINT` (catalog: `__` becomes `.` and `_` becomes `-`, as in pyiceberg),
`TABLETOPIC_COMMIT__INTERVAL_SECONDS`, `TABLETOPIC_GROUP_ID`.

Secrets need not be inline: any value may say `${env:VAR}` or `${file:PATH}` (references.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.dataclasses import dataclass

from tabletopic.config_errors import config_error_of
from tabletopic.config_rules import Needs, validate
from tabletopic.core.limits import DEFAULT_MAX_ITEMS
from tabletopic.core.upsert_mode import UpsertMode
from tabletopic.exceptions import ConfigError
from tabletopic.references import SECRET_DIRS_ENV, allowed_dirs, file_reader, resolve
from tabletopic.secrets import hide_referenced, is_secret_key, secrets_of

Format = Literal["json", "avro", "protobuf", "raw"]
FORMATS = ("json", "avro", "protobuf", "raw")
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
                           "TABLETOPIC_PROBING_WORKER", SECRET_DIRS_ENV})

DEFAULT_WAREHOUSE = "warehouse"
DEFAULT_GROUP = "tabletopic"
# Iceberg readers pay per snapshot and per file; 30 s keeps both in check while data stays fresh.
DEFAULT_COMMIT_INTERVAL_S = 30.0
DEFAULT_MAX_BUFFER_BYTES = 128 * 1024 * 1024
# Below Kubernetes' default 30 s termination grace period, with room for the JVM-less exit.
DEFAULT_SHUTDOWN_TIMEOUT_S = 20.0


class SecretValue(str):
    """A pass-through value under a secret-looking key (`sasl.password`, `s3.secret-access-key`): a str to the
    libraries it is handed to, masked in every repr (the config's, a dict's, a traceback's locals)."""

    def __repr__(self) -> str:
        return "'***'"


def _scalars_as_text(value: Any) -> Any:
    """YAML's `true` and `5` as librdkafka and pyiceberg want them: "true" and "5"; keys too (`route_tables`
    keyed by a boolean field: `{true: ..., false: ...}` are the routes of "True" and "False")."""
    if not isinstance(value, Mapping):
        return value
    return {str(k): (str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v)
            for k, v in value.items()}


def _secrets_marked(value: dict[str, str]) -> dict[str, str]:
    return {k: SecretValue(v) if is_secret_key(k) else v for k, v in value.items()}


def _comma_list(value: Any) -> Any:
    """A list may come as "a, b" (an environment variable, a flag)."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


_TEXT_VALUES = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
# Settings handed to a library as they are: librdkafka's, pyiceberg's, the registry client's.
PassThrough = Annotated[dict[str, str], BeforeValidator(_scalars_as_text), AfterValidator(_secrets_marked),
                        WithJsonSchema(_TEXT_VALUES)]
Names = Annotated[list[str], BeforeValidator(_comma_list)]
NameMap = Annotated[dict[str, str], BeforeValidator(_scalars_as_text)]
Seconds = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(gt=0)]
Bytes = Annotated[int, Field(gt=0)]

_SECTIONS = ("catalog", "schema_registry", "commit", "consumer", "maintenance", "http")
_MODEL = ConfigDict(extra="forbid", coerce_numbers_to_str=True, use_attribute_docstrings=True)
_CATALOG_OWN_KEYS = ("name", "warehouse", "properties")


def _catalog_schema(schema: dict[str, Any]) -> None:
    schema["additionalProperties"] = _TEXT_VALUES["additionalProperties"]


@dataclass(config=ConfigDict(**_MODEL, json_schema_extra=_catalog_schema))
class CatalogConfig:
    """The Iceberg catalog. Every key other than `name` and `warehouse` is a pyiceberg catalog property, passed
    as it is (`uri`, `type`, `s3.endpoint`, `credential`, ...)."""

    name: str = "default"
    """The catalog's name, as pyiceberg knows it."""
    warehouse: str = DEFAULT_WAREHOUSE
    """Where table files go: a folder, or `s3://bucket/prefix`. Without a `uri`, the embedded SQLite catalog lives
    here too."""
    properties: PassThrough = field(default_factory=dict)
    """pyiceberg catalog properties; usually written beside `name` at the top of the section instead."""

    @model_validator(mode="before")
    @classmethod
    def _properties_beside_own_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        own = {k: v for k, v in data.items() if k in _CATALOG_OWN_KEYS}
        rest = _scalars_as_text({k: v for k, v in data.items() if k not in _CATALOG_OWN_KEYS})
        if rest:
            given = own.get("properties")
            own["properties"] = {**(given if isinstance(given, Mapping) else {}), **rest}
        return own


@dataclass(config=_MODEL)
class SchemaRegistryConfig:
    """The Schema Registry (Confluent API) that Avro values and keys name by schema id."""

    url: str | None = None
    """Its URL; required by `format: avro` and `format: protobuf` tables."""
    properties: PassThrough = field(default_factory=dict)
    """Client settings, e.g. `basic.auth.user.info: USER:PASSWORD`."""


@dataclass(config=_MODEL)
class CommitConfig:
    """When buffered records become an Iceberg snapshot."""

    interval_seconds: Seconds = DEFAULT_COMMIT_INTERVAL_S
    """Seconds between a table's commits (a table may set its own `commit_interval_seconds`)."""
    max_buffer_bytes: Bytes = DEFAULT_MAX_BUFFER_BYTES
    """Per table: flush when its buffer reaches this many bytes."""
    max_process_buffer_bytes: Bytes = 2 * DEFAULT_MAX_BUFFER_BYTES
    """Per process: at this many buffered bytes flush the largest tables early, or pause consumption."""
    retry_deadline_seconds: Annotated[float, Field(ge=0)] = 30.0
    """How long one flush retries conflicts and outages before the table backs off and polling goes on; well
    below `max.poll.interval.ms` (300 s) so the worker stays in its group."""


@dataclass(config=_MODEL)
class ConsumerConfig:
    """How records are read from Kafka."""

    batch_size: Count = 10_000
    """Records librdkafka hands back per consume call, at most."""
    poll_timeout_seconds: Annotated[float, Field(ge=0)] = 0.5
    """How long one consume call waits for records (0: it does not wait)."""
    start: Literal["earliest", "latest"] = "earliest"
    """Where a partition starts when its table holds no offset for it yet."""


@dataclass(config=_MODEL)
class TableConfig:
    """One table and the topic (or topics) it holds."""

    table: str
    """NAMESPACE.TABLE. With `topic_pattern`, `{topic}` stands for each matching topic's safe name."""
    topics: Names = field(default_factory=list)
    """Topics this table reads, besides `topic`."""
    topic: str | None = None
    """The topic this table reads."""
    topic_pattern: str | None = None
    """A regex the whole topic name must match: every matching topic (also ones created later) feeds `table`."""
    route_field: str | None = None
    """JSON only: each record to the table its top-level field of this name names in `route_tables`; other values,
    and records without it, to `table`."""
    route_tables: NameMap = field(default_factory=dict)
    """`route_field` value -> NAMESPACE.TABLE."""
    format: Format = "json"
    """How values are encoded: `json`, `avro` or `protobuf` (Confluent wire format, through the Schema Registry) or
    `raw` bytes."""
    partition_by: Names = field(default_factory=list)
    """Iceberg partition transforms, e.g. `day(_kafka_timestamp)`, `bucket(16, id)`. A change evolves the spec for
    new data."""
    metadata_columns: bool = True
    """Add `_kafka_topic`, `_kafka_partition`, `_kafka_offset`, `_kafka_timestamp` (and key and headers) columns."""
    properties: NameMap = field(default_factory=dict)
    """Extra Iceberg table properties."""
    errors: ErrorPolicy = "dlq"
    """A record that cannot become a row: kept in `<table>__dlq` (`dlq`), stops the writer (`fail`), or is logged
    and left out (`skip`)."""
    dead_letter_topic: str | None = None
    """Also produce dead letters to this Kafka topic (needs `errors: dlq`)."""
    max_dead_letters_per_minute: Count | None = None
    """With `errors: dlq`: more dead letters than this within a minute halt the table (unset: no limit)."""
    json_drift: JsonDrift = "evolve"
    """JSON fields the table does not have: add them as columns (`evolve`), dead-letter the record (`strict`), or
    drop the fields (`ignore`)."""
    max_record_bytes: Bytes = DEFAULT_MAX_RECORD_BYTES
    """Larger values are dead letters (`oversized`)."""
    max_items: Count = DEFAULT_MAX_ITEMS
    """Avro: records with more array items and map entries are dead letters."""
    max_columns: Count = 1000
    """Fields at any depth: a record whose new fields would pass this cap is a dead letter (`too_many_columns`)."""
    max_new_columns_per_batch: Count = 100
    """New columns one batch may add; a record past it is a dead letter (`too_many_columns`)."""
    commit_interval_seconds: Seconds | None = None
    """This table's own `commit.interval_seconds`."""
    target_file_size_bytes: Bytes | None = None
    """This table's own `maintenance.target_file_size_bytes`."""
    column_names: ColumnNames = "as_is"
    """`lowercase`: field names folded, so `userId` and `UserID` are one column."""
    rename_columns: NameMap = field(default_factory=dict)
    """Top-level value fields under another column name (source field -> column), after `column_names` folding
    (see "rename_columns" below)."""
    mode: TableMode | None = None
    """`upsert`: the table holds the latest value per key and a tombstone deletes its key (docs/tables.md). Unset:
    `upsert` with `envelope: debezium`, else `append`."""
    key: Names = field(default_factory=list)
    """Upsert: the key columns of the value; empty: the Kafka record key."""
    key_format: KeyFormat | None = None
    """How the Kafka key is decoded; unset: as the value (`raw` values: bytes)."""
    json_schema: bool = False
    """`format: json` only: values carry a registered JSON Schema's id (Confluent wire format); each is validated
    against it (violations are `schema_violation` dead letters) and the table's columns come from the schema."""
    envelope: Envelope = "none"
    """`debezium`: values are Debezium change events (JSON, or Avro through the registry)."""
    cdc_columns: NameMap = field(default_factory=dict)
    """Debezium: extra columns for the change's `op`, `source_ts_ms` and `lsn`, named here (e.g. `op: _op`)."""

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
        # Protobuf keys are not read: config_rules asks a protobuf upsert table for its key_format.
        same: KeyFormat = "json" if self.format == "json" else "avro" if self.format == "avro" else "bytes"
        key_format = self.key_format or same
        return UpsertMode("value" if self.key else "kafka-key", key_format, self.envelope)


@dataclass(config=_MODEL)
class MaintenanceConfig:
    """The maintenance process beside the writers: compaction, snapshot expiry, orphan files."""

    enabled: bool = True
    """Run it."""
    check_interval_seconds: Annotated[float, Field(ge=0)] = 60.0
    """How often each table is looked at."""
    target_file_size_bytes: Bytes = 512 * 1024 * 1024
    """Compaction writes files of about this size."""
    min_small_files: Annotated[int, Field(ge=2)] = 50
    """Compact a table once its current snapshot has this many small files."""
    max_manifests: Annotated[int, Field(ge=2)] = 100
    """Merge the manifest listing once the current snapshot has this many manifests."""
    max_delete_files: Annotated[int, Field(ge=1)] = 50
    """Compact an upsert table once its current snapshot has this many equality-delete files."""
    expire_interval_seconds: Annotated[float, Field(ge=0)] = 3600.0
    """How often old snapshots are expired."""
    expire_older_than_hours: Annotated[float, Field(ge=0)] = 24.0
    """Snapshots older than this are expired..."""
    keep_snapshots: Annotated[int, Field(ge=0)] = 100
    """...except this many newest ones, always kept."""
    orphans_interval_seconds: Annotated[float, Field(ge=0)] = 86400.0
    """How often files no snapshot references are removed."""
    orphans_older_than_hours: Annotated[float, Field(ge=1)] = 24.0
    """Only unreferenced files older than this: a younger one may be a commit in flight."""


@dataclass(config=_MODEL)
class HttpConfig:
    """`/healthz`, `/readyz` and `/metrics`."""

    enabled: bool = True
    """Serve them."""
    host: str = "0.0.0.0"
    """Address to listen on."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """Port to listen on (0: any free port)."""
    stall_seconds: Annotated[float, Field(ge=0)] = 120.0
    """/healthz fails once a worker's loop has not turned for this long (a commit may hold one turn for
    `commit.retry_deadline_seconds`)."""
    request_timeout_seconds: Seconds = 5.0
    """A connection has this long for its request and answer, then it is cut."""
    max_connections: Count = 16
    """Connections served at once; past it new ones get a 503."""


@dataclass(config=_MODEL)
class Config:
    """tabletopic's settings."""

    kafka: PassThrough = field(default_factory=dict)
    """librdkafka settings, passed as they are: `bootstrap.servers` (required), `security.protocol`,
    `sasl.mechanisms`, ... `enable.auto.commit` must stay false: the offsets live in the table."""
    group_id: str = DEFAULT_GROUP
    """The consumer group; also names the offsets key in each table's snapshots."""
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    """The Iceberg catalog (default: an embedded SQLite catalog in `warehouse`)."""
    schema_registry: SchemaRegistryConfig = field(default_factory=SchemaRegistryConfig)
    """The Schema Registry, for Avro."""
    commit: CommitConfig = field(default_factory=CommitConfig)
    """When records become snapshots."""
    consumer: ConsumerConfig = field(default_factory=ConsumerConfig)
    """How records are read."""
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    """Compaction, snapshot expiry and orphan removal."""
    shutdown_timeout_seconds: Annotated[float, Field(ge=0)] = DEFAULT_SHUTDOWN_TIMEOUT_S
    """On SIGTERM, how long the workers have to commit what they hold; keep it below the pod's grace period."""
    workers: Annotated[int, Field(ge=0)] | None = None
    """Worker processes; unset or 0: one per CPU the process may use (its cgroup quota, not the node's count)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged (JSON lines on stderr)."""
    tables: list[TableConfig] = field(default_factory=list)
    """The tables and their topics."""
    http: HttpConfig = field(default_factory=HttpConfig)
    """The HTTP endpoints."""
    secret_values: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    """Not a key: every value from `${env:}`/`${file:}` or under a secret-looking key, for the logs to mask."""

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_as_defaults(cls, data: Any) -> Any:
        """`commit:` with nothing (or only comments) under it is YAML's null: the section's defaults."""
        if not isinstance(data, Mapping):
            return data
        return {k: v for k, v in data.items() if not (v is None and k in _SECTIONS)}


_CONFIG = TypeAdapter(Config)
_TABLE = TypeAdapter(TableConfig)


def table_config_from(data: Mapping[str, Any], where: str) -> TableConfig:
    """A table's settings as a mapping (its YAML, or what a table records of them) → TableConfig."""
    try:
        table: TableConfig = _TABLE.validate_python(data)
    except ValidationError as exc:
        raise config_error_of(exc, TableConfig, where) from None
    return table


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file (draft 2020-12), with each key's description and default."""
    schema: dict[str, Any] = _CONFIG.json_schema()
    schema["properties"].pop("secret_values")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


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


ALL_NEEDS: Needs = frozenset({"kafka", "tables", "registry"})


def load_config(
    path: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    needs: Needs = ALL_NEEDS,
    flag_names: Mapping[str, str] | None = None,
) -> Config:
    """File, then environment, then flags (highest); validated as a whole.

    `needs`: what the command uses of `kafka` (bootstrap.servers), `tables` (at least one) and `registry` (the
    Schema Registry of Avro tables); the rest may be missing. `flag_names`: config paths the command filled from
    flags -> the flag, so that an error about one names the flag the user typed."""
    data: dict[str, Any] = _read_file(Path(path)) if path is not None else {}
    environ = os.environ if environ is None else environ
    data = _merge(data, env_overrides(environ))
    data = _merge(data, flags or {})
    data, referenced = resolve(data, environ, file_reader(allowed_dirs(environ, path)))
    try:
        try:
            config: Config = _CONFIG.validate_python(data)
        except ValidationError as exc:
            raise config_error_of(exc, Config, "") from None
        validate(config, needs)
    except ConfigError as exc:
        # A typed key's error shows the value it got: never one that came from a reference.
        raise ConfigError(_as_flag(exc.key, flag_names or {}), hide_referenced(exc.reason, referenced)) from None
    config.secret_values = frozenset(set(referenced) | _values_under_secret_keys(config))
    return config


def _read_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("--config", _yaml_problem(path, exc)) from None
    if loaded is not None and not isinstance(loaded, Mapping):
        raise ConfigError("--config", f"{path} must hold a mapping at the top")
    return dict(loaded or {})


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line: the file, the line and column, what is wrong."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    return f"{where}: not valid YAML: {problem}"


def _as_flag(key: str, flag_names: Mapping[str, str]) -> str:
    """The flag the user typed when `key` (or the setting it lies in) came from one."""
    for path, flag in flag_names.items():
        if key == path or key.startswith((f"{path}.", f"{path}[")):
            return flag
    return key


def _values_under_secret_keys(config: Config) -> set[str]:
    """Values under secret-looking keys, and credentials inside any value (a URL's password, `?token=`)."""
    sections = [config.kafka, config.catalog.properties, config.schema_registry.properties]
    plain = [{key: str(value) for key, value in section.items()} for section in sections]  # str(): not SecretValue
    return secrets_of(plain, [config.schema_registry.url])
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
