"""A table's schema as this writer knows it, and its decoder: opens, creates and evolves the table.

The catalog calls of the ingest live here. A batch may add any number of fields with its first
change (up to max_columns: catalog/evolution.py), then only `max_new_columns_per_batch` more.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog.calls import catalog_call
from tabletopic.catalog.evolution import ColumnCaps, check_caps, count_fields, plan_evolution
from tabletopic.catalog.evolve import LOGGED_CHANGES, evolve
from tabletopic.catalog.partition_evolution import follow_partition_by, partition_by_property
from tabletopic.catalog.projection import (
    ProjectionChanged,
    TableFrozen,
    hash_of,
    recorded_projection,
    swap_under_way,
)
from tabletopic.catalog.schema_check import check_schema
from tabletopic.catalog.tables import create_table, key_columns, load_if_exists, scope_problem, table_schema
from tabletopic.config import TableConfig
from tabletopic.core import metadata
from tabletopic.core.records import RecordChunk
from tabletopic.core.upsert_mode import upsert_mode
from tabletopic.decode import raw
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, first_writer_schema, writer_arrow_schema
from tabletopic.decode.base import Decoded, Decoder, SchemaDrift
from tabletopic.decode.debezium_avro import AfterRowSchemas
from tabletopic.decode.json import JsonDecoder, infer_schema
from tabletopic.decode.json_schema import JsonSchemaDecoder, JsonSchemas, first_json_schema, json_schema_arrow_schema
from tabletopic.decode.keys import KeyDecoder
from tabletopic.decode.names import NameCollision
from tabletopic.decode.protobuf import ProtobufDecoder, first_value_schema
from tabletopic.decode.protobuf_schema import ProtobufSchemas
from tabletopic.decode.renames import column_renames
from tabletopic.exceptions import ConfigError, SchemaError
from tabletopic.kafka.registry import RegisteredSchemas
from tabletopic.upsert.changes import check_key_type

log = structlog.get_logger(__name__)

# Schema changes one batch may ask for before its remaining misfits count as dead letters.
MAX_EVOLUTIONS_PER_BATCH = 3


class TableShape:
    def __init__(self, spec: TableConfig, catalog: Catalog, writer_schemas: WriterSchemas | None,
                 on_change: Callable[[pa.Schema], None], location: str | None = None) -> None:
        """`on_change(schema)`: told the table's schema each time this writer learns a new one. `location`:
        where a table this writer creates puts its files (default: the catalog's choice)."""
        self.spec = spec
        self._location = location
        self.identifier = spec.table
        self._catalog = catalog
        self._writer_schemas = writer_schemas
        # Debezium Avro: a reader of whole envelopes, and the rows' schemas (each `after`, under a derived id).
        self.envelope_reader: KeyDecoder | None = None
        if writer_schemas is not None and spec.envelope == "debezium" and spec.format == "avro":
            self.envelope_reader = KeyDecoder("avro", writer_schemas.registry)
            self._writer_schemas = WriterSchemas(AfterRowSchemas(writer_schemas.registry, spec.cdc_columns))
        # Protobuf: the .proto files compiled per schema id (the registry's references resolved).
        self._protobuf_schemas: ProtobufSchemas | None = None
        if writer_schemas is not None and spec.format == "protobuf":
            registry = writer_schemas.registry
            assert isinstance(registry, RegisteredSchemas), "the Schema Registry resolves Protobuf references"
            self._protobuf_schemas = ProtobufSchemas(registry)
        # JSON with a registered JSON Schema: each id's schema and its compiled validator.
        self._json_schemas = (JsonSchemas(writer_schemas.registry) if writer_schemas is not None and spec.json_schema
                              else None)
        self._on_change = on_change
        self._lowercase = spec.column_names == "lowercase"
        self._renames = column_renames(spec.rename_columns, self._lowercase)
        self.decoder: Decoder | None = None
        self.schema: pa.Schema | None = None
        self.upsert = spec.upsert  # None: an append table
        self.key_names: list[str] = []  # an upsert table's key columns, once it exists
        # Column types the records' own schema declares (Debezium's embedded Connect schema): they win over
        # what JSON inference would make of the values, at creation and for new columns.
        self.declared: pa.Schema | None = None
        self._batch_room = spec.max_new_columns_per_batch  # fields the batch may still add after its first change
        self._batch_changed = False
        self.projection = hash_of(spec)
        table = load_if_exists(catalog, spec.table)
        if table is not None:
            self._check_projection(table)  # a rebuilt table's projection is never changed by an older config
            self._check_mode(table)  # before any change: the wrong kind of table is refused as it is
            table = follow_partition_by(catalog, spec.table, table, spec.partition_by,
                                        f"tables[{spec.table}].partition_by")
            self.use(table)

    @property
    def row_schemas(self) -> WriterSchemas | None:
        """The writer schemas the table's rows are decoded with."""
        return self._writer_schemas

    def exists(self) -> bool:
        return self.decoder is not None or load_if_exists(self._catalog, self.identifier) is not None

    def use(self, table: Table) -> None:
        self._check_projection(table)
        self._check_mode(table)
        self.schema = table.schema().as_arrow()
        self.key_names = key_columns(table)
        with_metadata = self.spec.metadata_columns
        value_schema = pa.schema([f for f in self.schema if not (with_metadata and f.name in metadata.NAMES)])
        self.decoder = self._make_decoder(value_schema)
        self._on_change(self.schema)

    def _make_decoder(self, value_schema: pa.Schema) -> Decoder:
        if self.spec.json_schema:
            assert self._json_schemas is not None, "config validation requires a registry for json_schema"
            return JsonSchemaDecoder(self._json_schemas, value_schema)
        if self.spec.format == "json":
            return JsonDecoder(value_schema, self.spec.json_drift)
        if self.spec.format == "avro":
            assert self._writer_schemas is not None, "config validation requires a registry for avro"
            return AvroDecoder(self._writer_schemas, value_schema, lowercase=self._lowercase, renames=self._renames,
                               max_items=self.spec.max_items)
        if self.spec.format == "protobuf":
            assert self._protobuf_schemas is not None, "config validation requires a registry for protobuf"
            return ProtobufDecoder(self._protobuf_schemas, value_schema, lowercase=self._lowercase,
                                   renames=self._renames, max_items=self.spec.max_items)
        return raw.RawDecoder()

    def _check_projection(self, table: Table) -> None:
        recorded = recorded_projection(table.metadata.properties)
        if recorded is not None and recorded.hash != self.projection:
            raise ProjectionChanged(self.identifier, recorded.hash, self.projection)

    def _check_mode(self, table: Table) -> None:
        """An existing table must be what the config says: its mode, its key and a spec that scopes deletes."""
        where = f"tables[{self.identifier}]"
        recorded = upsert_mode(table.metadata.properties)
        if self.upsert is None:
            if recorded is not None:
                raise ConfigError(f"{where}.mode", f"{self.identifier} is an upsert table: say mode: upsert "
                                                   "(appending to it would break its one row per key)")
            return
        if recorded is None:
            raise ConfigError(f"{where}.mode", f"{self.identifier} exists as an append table, and an append table is "
                                               "never converted: write the upsert table under a new name")
        keys = key_columns(table)
        if self.spec.key and set(keys) != set(self.spec.key):
            raise ConfigError(f"{where}.key", f"{self.identifier} is keyed by {keys}, not {self.spec.key}")
        if recorded != self.upsert:  # another key format reads the same key bytes as another key
            raise ConfigError(f"{where}.key", f"{self.identifier} was made with {recorded}, the config says "
                                              f"{self.upsert}")
        for spec in table.specs().values():
            if (problem := scope_problem(table.schema(), spec)) is not None:
                raise ConfigError(f"{where}.partition_by", problem)

    def key_schema_of(self, keys: pa.Table) -> pa.Schema:
        """The key columns a new upsert table gets, from its first batch's decoded keys."""
        for field in keys.schema:
            try:
                check_key_type(field.name, field.type)
            except ValueError as exc:
                raise SchemaError(field.name, str(exc)) from None
        return keys.schema

    # --- creation ------------------------------------------------------------------------------

    def create_for(self, chunk: RecordChunk) -> None:
        """Create the table from the schema of the first batch's records (a range of them, when
        the whole batch cannot give one: see intake.py)."""
        existing = self._load_if_exists()
        if existing is None:
            value_schema = self._value_schema_from(chunk)
            key_schema = self._key_schema_for(chunk, value_schema)
            schema = table_schema(value_schema, self.spec.metadata_columns, key_schema)
            check_schema(schema)
            added = count_fields(value_schema)
            check_caps(count_fields(schema) - added, added, ColumnCaps(self.spec.max_columns, None))
            existing = self._create(schema, key_schema.names if key_schema is not None else [])
            self._added(added)
        self.use(existing)

    def _key_schema_for(self, chunk: RecordChunk, value_schema: pa.Schema) -> pa.Schema | None:
        if self.upsert is None:
            return None
        if self.upsert.key_source == "value":
            missing = [k for k in self.spec.key if k not in value_schema.names]
            if missing:
                raise SchemaError(missing[0], "a key column the record's value does not have")
            return self.key_schema_of(pa.schema([value_schema.field(k) for k in self.spec.key]).empty_table())
        return self.key_schema_of(self.key_decoder().decode(chunk.keys).table)

    def create_for_keys(self, keys: pa.Table) -> None:
        """An upsert table whose first batch holds only deletes: its key columns, no value columns yet."""
        existing = self._load_if_exists()
        if existing is None:
            key_schema = self.key_schema_of(keys)
            schema = table_schema(pa.schema([]), self.spec.metadata_columns, key_schema)
            existing = self._create(schema, key_schema.names)
        self.use(existing)

    def key_decoder(self) -> KeyDecoder:
        """The Kafka key's decoder, typed by the table's key columns once it exists."""
        assert self.upsert is not None
        schema = None
        if self.schema is not None:  # a value-keyed table's tombstones name their key in the Kafka key
            schema = pa.schema([self.schema.field(k) for k in self.key_names])
        registry = self._writer_schemas.registry if self._writer_schemas is not None else None
        return KeyDecoder(self.upsert.key_format, registry, schema)

    def create_without_values(self) -> None:
        """The table of a first batch none of whose records gave a schema: its records are dead
        letters, and the offsets they used up must still be committed to a table."""
        existing = self._load_if_exists()
        if existing is None:
            if self.upsert is not None:
                return  # no key to type its key columns by: the table waits for a record that has one
            values = raw.SCHEMA if self.spec.format == "raw" else pa.schema([])
            existing = self._create(table_schema(values, self.spec.metadata_columns))
        self.use(existing)

    def _value_schema_from(self, chunk: RecordChunk) -> pa.Schema:
        if self.spec.json_schema:
            assert self._json_schemas is not None
            registered = first_json_schema(self._json_schemas, chunk.values)
            return pa.schema([]) if registered is None else json_schema_arrow_schema(registered)
        if self.spec.format == "json":
            return self._with_declared(infer_schema(chunk.values))
        if self.spec.format == "avro":
            assert self._writer_schemas is not None
            writer = first_writer_schema(self._writer_schemas, chunk.values)
            try:
                return pa.schema([]) if writer is None else writer_arrow_schema(writer, self._lowercase, self._renames)
            except NameCollision as exc:
                raise SchemaError("(value)", str(exc)) from None
        if self.spec.format == "protobuf":
            assert self._protobuf_schemas is not None
            try:
                found = first_value_schema(self._protobuf_schemas, chunk.values, self._lowercase, self._renames)
            except NameCollision as exc:
                raise SchemaError("(value)", str(exc)) from None
            return pa.schema([]) if found is None else found
        return raw.SCHEMA

    def _create(self, schema: pa.Schema, keys: list[str] | None = None) -> Table:
        properties = {**self.spec.properties, **partition_by_property(self.spec.partition_by)}
        with catalog_call("load_table", self.identifier):
            swap = swap_under_way(self._catalog, self.identifier)
        if swap is not None:  # the table is between two renames of a rebuild's cutover: never made anew
            raise TableFrozen(self.identifier, swap, time.time())
        if self.upsert is None:
            return create_table(self._catalog, self.identifier, schema, self.spec.partition_by, properties,
                                location=self._location)
        assert keys, "an upsert table is created with its key columns"
        try:
            return create_table(self._catalog, self.identifier, schema, self.spec.partition_by,
                                {**properties, **self.upsert.properties()}, identifier_fields=keys,
                                location=self._location)
        except ConfigError as exc:
            raise ConfigError(f"tables[{self.identifier}].{exc.key}", exc.reason) from None

    def _load_if_exists(self) -> Table | None:
        with catalog_call("load_table", self.identifier):
            return load_if_exists(self._catalog, self.identifier)

    # --- decoding and evolution ----------------------------------------------------------------

    def start_batch(self) -> None:
        self._batch_room = self.spec.max_new_columns_per_batch
        self._batch_changed = False

    def decode(self, chunk: RecordChunk) -> Decoded:
        """`chunk` decoded, the table evolved first for what its records bring (up to
        MAX_EVOLUTIONS_PER_BATCH times; past them, what still does not fit is the decoder's to refuse)."""
        for _ in range(MAX_EVOLUTIONS_PER_BATCH):
            assert self.decoder is not None
            try:
                return self.decoder.decode(chunk)
            except SchemaDrift as drift:
                self._evolve(drift, alone=len(chunk) == 1)
        assert self.decoder is not None
        return self.decoder.decode(chunk, allow_drift=False)

    def _evolve(self, drift: SchemaDrift, alone: bool) -> None:
        assert self.schema is not None
        # Checked first against the schema this writer knows, so that a flood of new fields is refused
        # without a catalog round trip per bisection step; evolve() checks again on the fresh table.
        known = pa.schema([f for f in self.schema if f.name not in metadata.NAMES])
        drift = SchemaDrift(self._with_declared(drift.incoming), drift.additions_only)
        plan = plan_evolution(known, drift.incoming, drift.additions_only)
        caps = self._caps(alone)
        if plan.needs_change:
            check_caps(count_fields(self.schema), count_fields(plan.target) - count_fields(known), caps)
        table, plan, added = evolve(self._catalog, self.identifier, drift.incoming, drift.additions_only, caps,
                                    guard=self._check_projection)
        self._added(added)
        if plan.incompatible:
            log.warning("schema.refused", table=self.identifier, reasons=plan.incompatible[:LOGGED_CHANGES],
                        reason_count=len(plan.incompatible))
        self.use(table)

    def _with_declared(self, inferred: pa.Schema) -> pa.Schema:
        """`inferred` with the declared type of each column the records' schema declares and the table does
        not have yet (a column's type is never changed by a declaration: its records are judged against it)."""
        if self.declared is None:
            return inferred
        existing = set(self.schema.names) if self.schema is not None else set()
        declared = {f.name: f for f in self.declared if f.name not in existing}
        return pa.schema([declared.get(f.name, f).with_nullable(True) for f in inferred])

    def _caps(self, alone: bool) -> ColumnCaps:
        """The caps on a change for one record (`alone`) or for a range of them. A batch's first
        change is one record's, whatever its size: a range past the room is bisected down to it."""
        first = alone and not self._batch_changed
        return ColumnCaps(self.spec.max_columns, None if first else self._batch_room)

    def _added(self, fields: int) -> None:
        if fields > 0:
            self._batch_changed = True
            self._batch_room -= fields
