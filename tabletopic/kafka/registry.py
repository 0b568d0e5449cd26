"""Writer schemas from a Confluent-compatible Schema Registry, cached by id."""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tabletopic.exceptions import SourceUnavailable


class UnknownSchemaId(LookupError):
    """The registry has no schema under this id."""


class RegistryUnavailable(SourceUnavailable):
    """The registry did not answer (or answered with a server error): retry later, never a dead letter."""


# The client waits forever by default: a registry that hangs would stop the whole worker.
DEFAULT_TIMEOUT_S = 10.0
_NUMERIC_KEYS = {"timeout", "cache.capacity", "cache.latest.ttl.sec", "max.retries", "retries.wait.ms",
                 "retries.max.wait.ms"}


class SchemaRegistry:
    """`url` may also be `mock://NAME`: confluent-kafka's in-process registry, for embedding."""

    def __init__(self, url: str, properties: Mapping[str, str] | None = None) -> None:
        conf: dict[str, object] = {"url": url, "timeout": DEFAULT_TIMEOUT_S}
        for key, value in (properties or {}).items():
            conf[key] = float(value) if key in _NUMERIC_KEYS else value
        self._client = SchemaRegistryClient.new_client(conf)
        self._cache: dict[int, str] = {}

    def schema_text(self, schema_id: int) -> str:
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
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
        self._cache[schema_id] = schema.schema_str
        return schema.schema_str

    def latest_schema_text(self, subject: str) -> str | None:
        try:
            return str(self._client.get_latest_version(subject).schema.schema_str)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise
