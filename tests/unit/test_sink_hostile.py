"""A record the decoder, the schema evolution or the table creation raise on is a dead letter; the rest
of its batch commits (issue 15, items 3 and 5). Against a real SQLite catalog; the decoder and the
catalog calls are wrapped only to make them raise on chosen records."""

import json
import math

import pytest
import sqlalchemy.exc
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.decode.isolate import PER_RECORD_BELOW
from tabletopic.exceptions import CommitError, RecordError
from tabletopic.sink import TableSink
from tabletopic.sink import intake as intake_module
from tabletopic.sink import table_shape as shape_module
from tabletopic.sink.table_shape import TableShape

POISON = b"poison"


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def chunk(values, first=0):
    n = len(values)
    return RecordChunk("topic", 0, list(range(first, first + n)), [None] * n, values, [0] * n, [None] * n)


def sink(catalog, **table):
    return TableSink(TableConfig(**{"table": "ns.t", "topic": "topic", **table}), catalog, "g", "w", RetryPolicy())


class Raising:
    """The real decoder, raising `error` on any batch holding a value with POISON in it; counts the
    values it is asked to decode."""

    def __init__(self, inner, error):
        self.inner, self.error, self.values_decoded, self.calls = inner, error, 0, 0

    def decode(self, chunk, allow_drift=True):
        self.calls += 1
        self.values_decoded += len(chunk)
        if any(v is not None and POISON in v for v in chunk.values):
            raise self.error
        return self.inner.decode(chunk, allow_drift)


@pytest.fixture
def raising(monkeypatch):
    """Every sink made after this raises the fixture's `.error` (set by the test) on poisoned values."""
    made = []
    real = TableShape._make_decoder

    def make(self, value_schema):
        decoder = Raising(real(self, value_schema), made_error[0])
        made.append(decoder)
        return decoder

    made_error = [OverflowError("Python int too large to convert to C long")]
    monkeypatch.setattr(TableShape, "_make_decoder", make)

    class Handle:
        decoders = made

        @staticmethod
        def set(error):
            made_error[0] = error

    return Handle


def rows_of(catalog, name, *columns):
    return sorted(catalog.load_table(name).scan(selected_fields=columns).to_arrow().to_pylist(),
                  key=lambda r: r["_kafka_offset"])


def letters_of(catalog):
    return [(r["_kafka_offset"], r["reason"], r["message"])
            for r in rows_of(catalog, dlq_identifier("ns.t"), "_kafka_offset", "reason", "message")]


def good_and_poison(n, poisoned, first=0):
    """Values for offsets first..first+n-1, `a` being the offset; those at `poisoned` offsets raise."""
    return [json.dumps({"a": o, "p": "poison"} if o in poisoned else {"a": o}).encode()
            for o in range(first, first + n)]


def test_records_the_decoder_raises_on_are_dead_letters_and_the_others_keep_their_values(catalog, raising):
    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)  # the table exists, with its decoder
    poisoned = {3, 11, 12, 40}
    json_sink.ingest(chunk(good_and_poison(50, poisoned, first=1), first=1), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 51}  # the partition moves on
    rows = rows_of(catalog, "ns.t", "a", "_kafka_offset")
    assert [(r["_kafka_offset"], r["a"]) for r in rows] == [(i, i) for i in range(51) if i not in poisoned]
    letters = letters_of(catalog)
    assert [(offset, reason) for offset, reason, _ in letters] == [(i, "decoder_error") for i in sorted(poisoned)]
    assert all(message.startswith("OverflowError: Python int too large") for _, _, message in letters)


def test_a_decoder_message_is_cut_to_a_few_hundred_characters(catalog, raising):
    raising.set(ValueError("x" * 100_000))
    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 1}', b'{"a": 2, "p": "poison"}']), now=0.0)
    json_sink.flush()
    [(offset, reason, message)] = letters_of(catalog)
    assert (offset, reason) == (1, "decoder_error")
    assert message.startswith("ValueError: xxx") and len(message) < 400 and "100000 characters" in message


def test_a_batch_whose_every_record_raises_costs_n_log_n_decodes(catalog, raising):
    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    n = 256
    json_sink.ingest(chunk(good_and_poison(n, set(range(1, n + 1)), first=1), first=1), now=0.0)
    decoder = raising.decoders[-1]
    assert json_sink.bad_records == {"decoder_error": n}
    levels = math.ceil(math.log2(n / PER_RECORD_BELOW)) + 1
    assert decoder.values_decoded <= n * (levels + 1) + 1  # each level decodes every record once
    assert json_sink.flush().committed == {("topic", 0): n + 1}


def test_a_failed_first_batch_still_creates_the_table_and_moves_the_offsets(catalog, raising):
    json_sink = sink(catalog)
    json_sink.ingest(chunk(good_and_poison(3, {5, 6, 7}, first=5), first=5), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 8}
    assert [offset for offset, _, _ in letters_of(catalog)] == [5, 6, 7]


@pytest.mark.parametrize("error", [
    OSError("connection refused"),
    sqlalchemy.exc.OperationalError("select", {}, Exception("database is locked")),
    CommitError("ns.t: schema change did not land after 10 attempts"),
])
def test_faults_of_the_services_are_raised_not_dead_lettered(catalog, raising, error):
    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    raising.set(error)
    json_sink.shape.use(catalog.load_table("ns.t"))  # a decoder that raises `error`
    with pytest.raises(type(error)):
        json_sink.ingest(chunk(good_and_poison(10, {4}, first=1), first=1), now=0.0)
    assert not json_sink.bad_records and json_sink.flush().committed == {("topic", 0): 1}


def test_with_errors_fail_the_first_record_the_decoder_raises_on_is_named(catalog, raising):
    json_sink = sink(catalog, errors="fail")
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    with pytest.raises(RecordError) as caught:
        json_sink.ingest(chunk(good_and_poison(10, {7, 9}, first=1), first=1), now=0.0)
    assert caught.value.offset == 7
    assert caught.value.reason.startswith("decoder_error: OverflowError")
    assert json_sink.flush().committed == {("topic", 0): 7}  # the records before it


def test_a_schema_change_that_raises_leaves_the_table_unchanged_and_refuses_only_its_records(catalog, monkeypatch):
    real = shape_module.evolve

    def evolve(catalog_, identifier, incoming, additions_only=False, caps=None, guard=None):
        if "bad" in incoming.names:
            raise ValueError("Cannot add column: bad")  # as pyiceberg does on a change it cannot make
        return real(catalog_, identifier, incoming, additions_only, caps, guard)

    monkeypatch.setattr(shape_module, "evolve", evolve)
    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    values = [b'{"a": 1, "b": 1}', b'{"a": 2, "bad": 2}', b'{"a": 3, "c": "x"}', b'{"a": 4}']
    json_sink.ingest(chunk(values, first=1), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 5}
    names = [f.name for f in catalog.load_table("ns.t").schema().fields]
    assert "bad" not in names and {"a", "b", "c"} <= set(names)
    assert [(r["_kafka_offset"], r["a"], r["b"], r["c"]) for r in rows_of(catalog, "ns.t", "a", "b", "c",
                                                                           "_kafka_offset")] == [
        (0, 0, None, None), (1, 1, 1, None), (3, 3, None, "x"), (4, 4, None, None)]
    assert [(o, r) for o, r, _ in letters_of(catalog)] == [(2, "decoder_error")]
    assert letters_of(catalog)[0][2] == "ValueError: Cannot add column: bad"


def test_a_table_creation_that_raises_on_one_records_schema_creates_it_from_the_others(catalog, monkeypatch):
    """Before, the error escaped ingest: the first batch failed again on every retry."""
    real_create, real_evolve = shape_module.create_table, shape_module.evolve

    def create_table(catalog_, identifier, schema, partition_by, properties, location=None):
        if "bad" in schema.names:
            raise ValueError("Invalid schema, field 'bad'")  # as pyiceberg does on a schema it cannot take
        return real_create(catalog_, identifier, schema, partition_by, properties, location=location)

    def evolve(catalog_, identifier, incoming, additions_only=False, caps=None, guard=None):
        if "bad" in incoming.names:
            raise ValueError("Invalid schema, field 'bad'")
        return real_evolve(catalog_, identifier, incoming, additions_only, caps, guard)

    monkeypatch.setattr(shape_module, "create_table", create_table)
    monkeypatch.setattr(shape_module, "evolve", evolve)
    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 0}', b'{"a": 1}', b'{"bad": 1}', b'{"a": 3, "b": true}']), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 4}
    assert [(r["_kafka_offset"], r["a"], r["b"]) for r in rows_of(catalog, "ns.t", "a", "b", "_kafka_offset")] == [
        (0, 0, None), (1, 1, None), (3, 3, True)]
    assert [(o, r) for o, r, _ in letters_of(catalog)] == [(2, "decoder_error")]


def test_a_lowercasing_that_raises_is_a_dead_letter(catalog, monkeypatch):
    real = intake_module.lowercase_json

    def lowercase_json(value, schema):
        if POISON in value:
            raise RecursionError("maximum recursion depth exceeded")
        return real(value, schema)

    monkeypatch.setattr(intake_module, "lowercase_json", lowercase_json)
    json_sink = sink(catalog, column_names="lowercase")
    json_sink.ingest(chunk([b'{"A": 0}', b'{"A": 1, "p": "poison"}', b'{"A": 2}']), now=0.0)
    json_sink.flush()
    assert [r["a"] for r in rows_of(catalog, "ns.t", "a", "_kafka_offset")] == [0, 2]
    assert letters_of(catalog) == [(1, "decoder_error", "RecursionError: maximum recursion depth exceeded")]


# --- schema explosion (item 5) ------------------------------------------------------------------


def fields(prefix, n, **extra):
    return json.dumps({**extra, **{f"{prefix}{i}": i for i in range(n)}}).encode()


def columns(catalog):
    return [f.name for f in catalog.load_table("ns.t").schema().fields]


def test_records_past_the_batch_cap_on_new_fields_are_dead_letters_the_others_evolve(catalog):
    json_sink = sink(catalog, max_new_columns_per_batch=6)
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    values = [fields("x", 3, a=1), fields("y", 5, a=2), fields("z", 2, a=3), b'{"a": 4, "x0": 9}']
    json_sink.ingest(chunk(values, first=1), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 5}
    names = columns(catalog)
    assert {"x0", "x1", "x2", "z0", "z1"} <= set(names) and not any(n.startswith("y") for n in names)
    assert [(r["_kafka_offset"], r["a"]) for r in rows_of(catalog, "ns.t", "a", "_kafka_offset")] == [
        (0, 0), (1, 1), (3, 3), (4, 4)]
    [(offset, reason, message)] = letters_of(catalog)
    assert (offset, reason) == (2, "too_many_columns")
    assert message == "5 new fields, more than this batch may still add (3 of max_new_columns_per_batch)"
    # The cap is per batch: the next batch may add as many again.
    json_sink.ingest(chunk([fields("y", 5, a=5)], first=5), now=0.0)
    json_sink.flush()
    assert {"y0", "y4"} <= set(columns(catalog))


def test_records_that_would_take_the_table_past_max_columns_are_dead_letters(catalog):
    json_sink = sink(catalog, max_columns=11)  # a and the 6 metadata columns, then room for 4 more
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    json_sink.ingest(chunk([fields("x", 3, a=1), fields("y", 2, a=2), b'{"a": 3, "s": {"n": 1}}'], first=1),
                     now=0.0)
    json_sink.flush()
    assert len(columns(catalog)) == 10
    letters = letters_of(catalog)
    assert [(o, r) for o, r, _ in letters] == [(2, "too_many_columns"), (3, "too_many_columns")]
    assert letters[0][2] == "2 new fields would give the table 12 columns, over max_columns (11; it has 10)"


def test_a_first_record_with_thousands_of_fields_does_not_create_the_table_with_them(catalog):
    json_sink = sink(catalog)  # defaults: max_new_columns_per_batch 100, max_columns 1000
    json_sink.ingest(chunk([fields("f", 5000), b'{"a": 1}', fields("g", 50)]), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 3}
    names = columns(catalog)
    assert "a" in names and "g49" in names and "f0" not in names
    assert [(o, r) for o, r, _ in letters_of(catalog)] == [(0, "too_many_columns")]


def test_a_tables_max_items_reaches_its_avro_decoder(catalog):
    import io
    import struct

    import fastavro

    from tabletopic.decode.avro import WriterSchemas
    from tests.unit.decode.test_avro_batch import Registry

    schema = {"type": "record", "name": "E", "fields": [
        {"name": "n", "type": "long"}, {"name": "xs", "type": {"type": "array", "items": "long"}}]}

    def wire(items):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, fastavro.parse_schema(schema), {"n": items, "xs": list(range(items))})
        return struct.pack(">bI", 0, 1) + body.getvalue()

    spec = TableConfig(table="ns.t", topic="topic", format="avro", max_items=3)
    avro_sink = TableSink(spec, catalog, "g", "w", RetryPolicy(), writer_schemas=WriterSchemas(Registry({1: schema})))
    avro_sink.ingest(chunk([wire(3), wire(4)]), now=0.0)
    assert avro_sink.bad_records == {"too_many_items": 1}


# --- wide records land: the per-batch cap defers only later records' fields ----------------------


def test_json_records_of_121_fields_land_with_the_default_caps(catalog):
    """Before, 121 > max_new_columns_per_batch (100) refused them on every batch: never landed."""
    json_sink = sink(catalog)
    json_sink.ingest(chunk([fields("f", 121, a=n) for n in range(3)]), now=0.0)  # creates the table
    json_sink.ingest(chunk([fields("g", 121, a=n) for n in range(3, 6)], first=3), now=0.0)  # evolves it
    assert json_sink.flush().committed == {("topic", 0): 6}
    assert not json_sink.bad_records
    rows = rows_of(catalog, "ns.t", "a", "f120", "g120", "_kafka_offset")
    assert [(r["a"], r["f120"], r["g120"]) for r in rows] == [(n, 120, None) for n in range(3)] + [
        (n, None, 120) for n in range(3, 6)]


def avro_wire(schema, value, schema_id):
    import io
    import struct

    import fastavro

    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), value)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def test_an_avro_writer_schema_of_150_fields_lands_and_so_does_its_next_version(catalog):
    from tabletopic.decode.avro import WriterSchemas
    from tests.unit.decode.test_avro_batch import Registry

    def schema(n):
        return {"type": "record", "name": "Wide", "fields": [{"name": f"f{i}", "type": "long"} for i in range(n)]}

    v1, v2 = schema(150), schema(300)
    spec = TableConfig(table="ns.t", topic="topic", format="avro")
    schemas = WriterSchemas(Registry({1: v1, 2: v2}))
    avro_sink = TableSink(spec, catalog, "g", "w", RetryPolicy(), writer_schemas=schemas)
    avro_sink.ingest(chunk([avro_wire(v1, {f"f{i}": n * 1000 + i for i in range(150)}, 1) for n in range(2)]),
                     now=0.0)
    avro_sink.ingest(chunk([avro_wire(v2, {f"f{i}": n * 1000 + i for i in range(300)}, 2) for n in range(2, 4)],
                           first=2), now=0.0)
    assert avro_sink.flush().committed == {("topic", 0): 4}
    assert not avro_sink.bad_records
    rows = rows_of(catalog, "ns.t", "f0", "f149", "f299", "_kafka_offset")
    assert [(r["f0"], r["f149"], r["f299"]) for r in rows] == [
        (0, 149, None), (1000, 1149, None), (2000, 2149, 2299), (3000, 3149, 3299)]


def test_the_first_records_new_fields_land_whatever_their_number_those_of_the_next_count_against_the_cap(catalog):
    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    json_sink.ingest(chunk([fields("x", 150, a=1), fields("y", 150, a=2), fields("x", 150, a=3)], first=1),
                     now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 4}
    names = set(columns(catalog))
    assert {"x0", "x149"} <= names and not any(n.startswith("y") for n in names)
    assert [(r["_kafka_offset"], r["x149"]) for r in rows_of(catalog, "ns.t", "x149", "_kafka_offset")] == [
        (0, None), (1, 149), (3, 149)]
    [(offset, reason, message)] = letters_of(catalog)
    assert (offset, reason) == (2, "too_many_columns")
    assert message == "150 new fields, more than this batch may still add (0 of max_new_columns_per_batch)"


def test_a_table_wider_than_max_columns_still_takes_records_that_add_nothing(catalog):
    """A table created before the cap (or by another tool) with more columns than max_columns."""
    import pyarrow as pa

    from tabletopic.catalog.tables import create_table, table_schema

    wide = pa.schema([pa.field("n", pa.int32()), *(pa.field(f"c{i}", pa.int64()) for i in range(1500))])
    create_table(catalog, "ns.t", table_schema(wide, True), [], {})
    json_sink = sink(catalog)  # max_columns 1000
    json_sink.ingest(chunk([b'{"n": 1, "c0": 0}', b'{"c1499": 7}', b'{"n": 2, "new": 1}', b'{"n": 4}']), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 4}
    assert [(r["_kafka_offset"], r["n"], r["c1499"]) for r in rows_of(catalog, "ns.t", "n", "c1499",
                                                                          "_kafka_offset")] == [
        (0, 1, None), (1, None, 7), (3, 4, None)]
    assert [(o, r) for o, r, _ in letters_of(catalog)] == [(2, "too_many_columns")]


# --- a catalog call that fails is the catalog's fault, whatever it raises --------------------------


def failing(error, times=None):
    """A catalog method's stand-in that raises `error` (the first `times` calls, or always)."""
    calls = [0]

    def wrap(real):
        def call(*args, **kwargs):
            calls[0] += 1
            if times is None or calls[0] <= times:
                raise error
            return real(*args, **kwargs)
        return call
    return wrap


@pytest.mark.parametrize("method, error", [
    ("load_table", ValueError("malformed answer: Expecting value: line 1 column 1")),
    ("commit_table", KeyError("metadata")),
])
def test_a_catalog_call_failing_during_a_schema_change_is_raised_and_the_table_left_as_it_was(
        catalog, monkeypatch, method, error):
    """Before, the ValueError or KeyError was bisected and every record of the batch dead-lettered."""
    from tabletopic.catalog.calls import CatalogCallFailed

    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    before = catalog.load_table("ns.t").schema()
    monkeypatch.setattr(catalog, method, failing(error)(getattr(catalog, method)))
    with pytest.raises(CatalogCallFailed) as caught:
        json_sink.ingest(chunk([b'{"a": 1, "b": 1}', b'{"a": 2}', b'{"a": 3, "c": 1}'], first=1), now=0.0)
    assert caught.value.__cause__ is error
    monkeypatch.undo()
    assert catalog.load_table("ns.t").schema() == before
    assert not json_sink.bad_records
    assert json_sink.flush().committed == {("topic", 0): 1}
    assert not catalog.table_exists(dlq_identifier("ns.t"))


def test_a_catalog_glitch_creating_the_table_is_raised_and_the_record_lands_on_the_next_try(catalog, monkeypatch):
    """Before, the one record of the batch was a dead letter (`decoder_error: ValueError`)."""
    from tabletopic.catalog.calls import CatalogCallFailed

    monkeypatch.setattr(catalog, "create_table", failing(ValueError("malformed answer"), times=1)(
        catalog.create_table))
    json_sink = sink(catalog)
    with pytest.raises(CatalogCallFailed):
        json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)
    assert not catalog.table_exists("ns.t") and not json_sink.bad_records
    json_sink.ingest(chunk([b'{"a": 0}']), now=0.0)  # the service reads the chunk again
    assert json_sink.flush().committed == {("topic", 0): 1}
    assert [r["a"] for r in rows_of(catalog, "ns.t", "a", "_kafka_offset")] == [0]
    assert not catalog.table_exists(dlq_identifier("ns.t"))


def test_a_schema_pyiceberg_cannot_take_is_still_the_records_fault(catalog):
    """Converted before the catalog is called: the error is the record's, not a CatalogCallFailed."""
    import pyarrow as pa

    from tabletopic.catalog.calls import CatalogCallFailed
    from tabletopic.catalog.tables import create_table

    with pytest.raises(ValueError, match="Null type") as caught:
        create_table(catalog, "ns.t", pa.schema([pa.field("x", pa.null())]), [], {})
    assert not isinstance(caught.value, CatalogCallFailed) and not catalog.table_exists("ns.t")


class ServiceStub:
    """What Service._on_ingest_fault needs of the service: records what it decided."""

    def __init__(self):
        self.seeks, self.held, self.halted = [], [], []
        self.consumer = self

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    def _sinks_for(self, topic):
        return ["one table"]

    def _read_again(self, chunk, offset):
        from tabletopic.service import Service

        Service._read_again(self, chunk, offset)  # type: ignore[arg-type]

    def _hold(self, sink, chunk, exc, now):
        self.held.append(exc)

    def _halt_on_fault(self, sink, fault):
        self.halted.append(fault.reason)


def catalog_failure(cause):
    from tabletopic.catalog.calls import CatalogCallFailed

    try:
        raise CatalogCallFailed("load_table", "ns.t", cause) from cause
    except CatalogCallFailed as exc:
        return exc


@pytest.mark.parametrize("error, outcome", [
    (CommitError("ns.t: schema change did not land after 10 attempts"), "held"),  # before: the worker crashed
    (catalog_failure(ValueError("malformed answer")), "held"),
    (catalog_failure(KeyError("metadata")), "held"),
    (catalog_failure(OSError("connection reset")), "held"),
    (catalog_failure(__import__("pyiceberg.exceptions").exceptions.ForbiddenError("denied")), "catalog_forbidden"),
    (ZeroDivisionError("a bug"), "crash"),
])
def test_the_service_holds_a_table_on_a_failed_catalog_call_or_a_lost_schema_race(error, outcome):
    from tabletopic.service import Service

    service = ServiceStub()
    table = type("Sink", (), {"identifier": "ns.t"})()
    handled = Service._on_ingest_fault(service, table, chunk([b"{}"], first=7), error, 0.0)
    got = "crash" if not handled else "held" if service.held else service.halted[0]
    assert got == outcome
    assert service.seeks == ([] if outcome == "crash" else [(("topic", 0), 7)])
