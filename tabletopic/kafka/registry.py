"""Writer schemas from a Confluent-compatible Schema Registry, cached by id; ids it does not know
are remembered for a while too, so a flood of records with unknown ids costs one request per id.

A schema may name others it imports (Protobuf's `import`, JSON Schema's `$ref`) by reference: a name, and
the subject and version that hold it. Those are looked up by subject and version, each once (a registered
version never changes)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tabletopic.exceptions import SourceUnavailable


class UnknownSchemaId(LookupError):
    """The registry has no schema under this id."""


class UnknownReference(LookupError):
    """The registry has no schema under a reference's subject and version."""


class RegistryUnavailable(SourceUnavailable):
    """The registry did not answer (or answered with a server error): retry later, never a dead letter."""


# The client waits forever by default: a registry that hangs would stop the whole worker.
DEFAULT_TIMEOUT_S = 10.0
# How long an id the registry answered 404 for is taken as unknown without asking again. Registries
# hand out an id before any producer can use it, so a miss is almost always a bad or foreign id; the
# TTL only bounds how long a registry that lags (a follower catching up) keeps costing dead letters.
UNKNOWN_ID_TTL_S = 30.0
_MAX_UNKNOWN_IDS = 10_000  # remembered at most (the oldest forgotten first): random ids cost memory too
_NUMERIC_KEYS = {"timeout", "cache.capacity", "cache.latest.ttl.sec", "max.retries", "retries.wait.ms",
                 "retries.max.wait.ms"}


class SchemaTexts(Protocol):
    """Where writer schemas come from by id: the registry, or a view over it (decode/debezium_avro.py)."""

    def schema_text(self, schema_id: int) -> str: ...


@dataclass(frozen=True)
class SchemaReference:
    name: str  # how the referring schema names it (a Protobuf import path)
    subject: str
    version: int


@dataclass(frozen=True)
class RegisteredSchema:
    text: str
    schema_type: str  # AVRO, PROTOBUF or JSON
    references: tuple[SchemaReference, ...] = ()


@runtime_checkable
class RegisteredSchemas(SchemaTexts, Protocol):
    """Schemas with their type and references: what Protobuf's imports are resolved by."""

    def registered(self, schema_id: int) -> RegisteredSchema:
        """Raises UnknownSchemaId or RegistryUnavailable."""
        ...

    def registered_version(self, subject: str, version: int) -> RegisteredSchema:
        """Raises UnknownReference or RegistryUnavailable."""
        ...


class SchemaRegistry:
    """`url` may also be `mock://NAME`: confluent-kafka's in-process registry, for embedding."""

    def __init__(self, url: str, properties: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        conf: dict[str, object] = {"url": url, "timeout": DEFAULT_TIMEOUT_S}
        for key, value in (properties or {}).items():
            conf[key] = float(value) if key in _NUMERIC_KEYS else value
        self._client = SchemaRegistryClient.new_client(conf)
        self._cache: dict[int, RegisteredSchema] = {}
        self._versions: dict[tuple[str, int], RegisteredSchema] = {}
        self._unknown_until: OrderedDict[int, float] = OrderedDict()  # id -> when to ask again
        self._clock = clock
        # One lookup at a time: concurrent callers asking for the same id wait for the first answer.
        self._lookup = threading.Lock()

    def schema_text(self, schema_id: int) -> str:
        return self.registered(schema_id).text

    def registered(self, schema_id: int) -> RegisteredSchema:
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        with self._lookup:
            cached = self._cache.get(schema_id)
            if cached is not None:
                return cached
            if self._clock() < self._unknown_until.get(schema_id, float("-inf")):
                raise UnknownSchemaId(schema_id)
            try:
                schema = self._fetch(schema_id)
            except UnknownSchemaId:
                self._remember_unknown(schema_id)
                raise
            self._unknown_until.pop(schema_id, None)
            self._cache[schema_id] = schema
            return schema

    def registered_version(self, subject: str, version: int) -> RegisteredSchema:
        cached = self._versions.get((subject, version))
        if cached is not None:
            return cached
        with self._lookup:
            try:
                registered = self._client.get_version(subject, version)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise UnknownReference(f"no version {version} of subject {subject!r}") from None
                raise RegistryUnavailable(f"schema registry: {exc}") from None
            except Exception as exc:  # the client's transport errors
                raise RegistryUnavailable(f"schema registry: {type(exc).__name__}: {exc}") from None
            if registered.schema is None or registered.schema.schema_str is None:
                raise UnknownReference(f"no schema in version {version} of subject {subject!r}")
            schema = _registered(registered.schema)
            self._versions[(subject, version)] = schema
            return schema

    def _remember_unknown(self, schema_id: int) -> None:
        self._unknown_until.pop(schema_id, None)
        self._unknown_until[schema_id] = self._clock() + UNKNOWN_ID_TTL_S
        while len(self._unknown_until) > _MAX_UNKNOWN_IDS:
            self._unknown_until.popitem(last=False)

    def _fetch(self, schema_id: int) -> RegisteredSchema:
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchemaId(schema_id) from None
            raise RegistryUnavailable(f"schema registry: {exc}") from None
        except Exception as exc:  # the client's transport errors (connection refused, timeouts)
            raise RegistryUnavailable(f"schema registry: {type(exc).__name__}: {exc}") from None
        if schema.schema_str is None:
            raise UnknownSchemaId(schema_id)
        return _registered(schema)

    def latest_schema_text(self, subject: str) -> str | None:
        try:
            return str(self._client.get_latest_version(subject).schema.schema_str)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise


def _registered(schema: Any) -> RegisteredSchema:
    references = tuple(SchemaReference(str(r.name), str(r.subject), -1 if r.version is None else int(r.version))
                       for r in schema.references or ())  # -1: the latest version, as the Confluent API reads it
    return RegisteredSchema(str(schema.schema_str), str(schema.schema_type or "AVRO"), references)
