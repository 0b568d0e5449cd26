"""The ceiling: each stage of the writer's path alone, on the same records, in one process.

(a) consume: tabletopic's own consumer (`GroupConsumer.poll`, the batch size and timeout of
    `ConsumerConfig`), reading all records of the topic into RecordChunks, kept for (b);
(b) decode: `TableSink.ingest` per chunk (oversize check, the decoder, the metadata columns,
    assembly to the table's schema, buffering), on a sink over a fresh table;
(c) Parquet write: the time inside `write_data_files` while the sink flushes;
(d) commit: the rest of `TableSink.flush` (reload, offsets verdicts, concat, conform, the
    fast-append and its metadata files, the catalog commit), per commit.

The sink flushes as the writer does under full load: after a poll whose records brought the
table's buffer to `commit.max_buffer_bytes`, and once at the end. Stages run one after the
other, so their seconds add up: ceiling records/s = N / (a + b + c + d), with (d) scaled to the
number of commits the real run makes when that is known.

The project's own functions run here, not copies: to split a stage into parts, the functions
it calls are wrapped with timers for the duration (`Probe`); a part whose function has gone
(renamed) is left out of the breakdown, the stage totals stay.

    .venv/bin/python -m bench.stages --records 200000 --format json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from pyiceberg.catalog import Catalog

import tabletopic.commit.committer as committer_module
import tabletopic.core.metadata as metadata_module
from bench import dataset
from tabletopic import logs
from tabletopic.catalog.tables import create_table, table_schema
from tabletopic.config import CommitConfig, ConsumerConfig, Format, TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.decode.avro import AvroDecoder, WriterSchemas
from tabletopic.decode.json import JsonDecoder
from tabletopic.kafka.consumer import GroupConsumer, RebalanceHandlers
from tabletopic.kafka.registry import SchemaRegistry
from tabletopic.sink import TableSink


class Probe:
    """Seconds spent inside wrapped functions, by label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def timed(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        return wrapper

    @contextlib.contextmanager
    def wrap(self, owner: Any, name: str, label: str) -> Iterator[None]:
        """Time calls of `owner.name` (a module function or a class's method) while in the block."""
        original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if original is None:
            yield
            return
        setattr(owner, name, self.timed(label, original))
        try:
            yield
        finally:
            setattr(owner, name, original)


class _TimedClient:
    """The librdkafka consumer inside GroupConsumer, its consume() timed (all else passes through)."""

    def __init__(self, inner: Any, probe: Probe) -> None:
        self._inner = inner
        self.consume = probe.timed("consume.librdkafka", inner.consume)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class StageResult:
    format: str
    records: int
    value_bytes: int
    consume_s: float = 0.0
    decode_s: float = 0.0
    write_s: float = 0.0
    commit_s: float = 0.0
    commits: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # process CPU (all threads) per stage
    parts_s: dict[str, float] = field(default_factory=dict)  # the breakdown inside the stages

    @property
    def commit_s_each(self) -> float:
        return self.commit_s / max(1, self.commits)

    def seconds(self, commits: int | None = None) -> float:
        """The four stages' seconds, the commit stage scaled to `commits` commits if given."""
        commit = self.commit_s if commits is None else self.commit_s_each * commits
        return self.consume_s + self.decode_s + self.write_s + commit

    def ceiling(self, commits: int | None = None) -> float:
        """Records/s of one core doing nothing but the four stages in turn."""
        return self.records / self.seconds(commits)

    def cpu_ceiling(self) -> float:
        """Records/s if every stage cost only its CPU (consuming waits on the network; the writer overlaps it)."""
        return self.records / max(1e-9, sum(self.cpu_s.values()))

    def per_record_us(self) -> dict[str, float]:
        n = self.records
        stages = {"consume": self.consume_s, "decode": self.decode_s, "write": self.write_s, "commit": self.commit_s}
        return {name: round(seconds / n * 1e6, 3) for name, seconds in stages.items()}

    def parts_per_record_us(self) -> dict[str, float]:
        return {name: round(seconds / self.records * 1e6, 3) for name, seconds in self.parts_s.items()}

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "commit_s_each": round(self.commit_s_each, 4),
                "ceiling_records_per_s": round(self.ceiling()), "cpu_ceiling_records_per_s": round(self.cpu_ceiling()),
                "us_per_record": self.per_record_us(), "cpu_us_per_record": {
                    name: round(seconds / self.records * 1e6, 3) for name, seconds in self.cpu_s.items()},
                "parts_us_per_record": self.parts_per_record_us()}


def prepare_table(catalog: Catalog, identifier: str, fmt: str) -> None:
    """The table as the benchmark's writers find it: value columns of the dataset, then the Kafka columns."""
    create_table(catalog, identifier, table_schema(dataset.value_schema(fmt), True), [], {})


def consume_all(bootstrap: str, topic: str, records: int, timeout_s: float = 600.0,
                probe: Probe | None = None, kafka: Mapping[str, str] | None = None,
                ) -> tuple[list[list[RecordChunk]], float]:
    """Every record of `topic`, poll by poll, and the seconds from the assignment to the last record.
    `kafka`: librdkafka settings beside the bootstrap servers, as a writer's `kafka:` section gives them."""
    settings = ConsumerConfig()
    consumer = GroupConsumer({"bootstrap.servers": bootstrap, **(kafka or {})},
                             f"bench-stages-{uuid.uuid4().hex[:8]}", "earliest")
    if probe is not None and hasattr(consumer, "_consumer"):
        cast(Any, consumer)._consumer = _TimedClient(consumer._consumer, probe)
    assigned_at: list[float] = []

    def on_assign(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        assigned_at.append(time.perf_counter())
        return {}  # no table offsets: from the log start

    consumer.subscribe([topic], RebalanceHandlers(start_offsets=on_assign, revoked=lambda tps: None,
                                                  lost=lambda tps: None))
    polls: list[list[RecordChunk]] = []
    total = 0
    poll_s = library_s = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while total < records:
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumed {total} of {records} records of {topic} in {timeout_s:.0f}s")
            library_before = probe.seconds["consume.librdkafka"] if probe is not None else 0.0
            started = time.perf_counter()
            chunks = consumer.poll(settings.batch_size, settings.poll_timeout_seconds)
            if assigned_at:  # polls before the assignment waited for the group, they did not consume
                poll_s += time.perf_counter() - started
                if probe is not None:
                    library_s += probe.seconds["consume.librdkafka"] - library_before
            if chunks:
                polls.append(chunks)
                total += sum(len(c) for c in chunks)
        finished = time.perf_counter()
    finally:
        consumer.close()
    if probe is not None:
        probe.seconds["consume.librdkafka"] = library_s
        probe.seconds["consume.poll"] = poll_s
    return polls, finished - assigned_at[0]


def run_stages(bootstrap: str, catalog: Catalog, topic: str, fmt: str, records: int,
               registry_url: str | None = None, max_buffer_bytes: int | None = None,
               kafka: Mapping[str, str] | None = None) -> StageResult:
    cap = max_buffer_bytes or CommitConfig().max_buffer_bytes
    probe = Probe()
    cpu0 = time.process_time()
    # (a) consume: time.process_time counts librdkafka's threads too.
    polls, consume_s = consume_all(bootstrap, topic, records, probe=probe, kafka=kafka)
    cpu1 = time.process_time()
    value_bytes = sum(len(v) for chunks in polls for c in chunks for v in c.values if v is not None)
    result = StageResult(fmt, records, value_bytes, consume_s=consume_s)
    poll_s = probe.seconds.pop("consume.poll", 0.0)
    library_s = probe.seconds.pop("consume.librdkafka", 0.0)
    result.parts_s["consume.librdkafka"] = library_s  # inside Consumer.consume(), waiting for fetches included
    result.parts_s["consume.regroup_python"] = poll_s - library_s  # the rest of GroupConsumer.poll

    identifier = f"stages.{fmt}_{uuid.uuid4().hex[:8]}"
    prepare_table(catalog, identifier, fmt)
    writer_schemas = WriterSchemas(SchemaRegistry(registry_url)) if registry_url else None
    spec = TableConfig(table=identifier, topic=topic, format=cast(Format, fmt))
    sink = TableSink(spec, catalog, f"bench-{identifier}", "bench-stages", RetryPolicy(), writer_schemas)

    decoder_class = JsonDecoder if fmt == "json" else AvroDecoder
    cpu_decode = cpu_flush = 0.0
    with contextlib.ExitStack() as stack:
        stack.enter_context(probe.wrap(decoder_class, "decode", "decode.decoder"))
        stack.enter_context(probe.wrap(metadata_module, "metadata_arrays", "decode.metadata_columns"))
        stack.enter_context(probe.wrap(committer_module, "write_data_files", "write.parquet"))
        stack.enter_context(probe.wrap(committer_module, "conform_table", "commit.conform"))
        stack.enter_context(probe.wrap(committer_module, "append_files", "commit.append"))
        stack.enter_context(probe.wrap(committer_module, "table_offsets", "commit.read_offsets"))

        def flush() -> None:
            nonlocal cpu_flush
            cpu = time.process_time()
            started = time.perf_counter()
            outcome = sink.flush()
            result.commit_s += time.perf_counter() - started
            cpu_flush += time.process_time() - cpu
            if outcome is not None and outcome.committed:
                result.commits += 1

        for chunks in polls:
            cpu = time.process_time()
            started = time.perf_counter()
            now = time.monotonic()
            for chunk in chunks:
                sink.ingest(chunk, now)
            result.decode_s += time.perf_counter() - started
            cpu_decode += time.process_time() - cpu
            if sink.buffer.nbytes >= cap:
                flush()
        if not sink.buffer.is_empty:
            flush()
    # (c) is the time inside the Parquet writer; (d) the rest of each flush.
    result.write_s = probe.seconds.get("write.parquet", 0.0)
    result.commit_s -= result.write_s
    for label, seconds in probe.seconds.items():
        result.parts_s[label] = seconds
    if "decode.decoder" in probe.seconds:
        result.parts_s["decode.rest_of_ingest"] = (result.decode_s - probe.seconds["decode.decoder"]
                                                  - probe.seconds.get("decode.metadata_columns", 0.0))
    if "commit.append" in probe.seconds:
        result.parts_s["commit.rest_of_flush"] = result.commit_s - sum(
            probe.seconds.get(k, 0.0) for k in ("commit.append", "commit.conform", "commit.read_offsets"))
    write_share = result.write_s / max(1e-9, result.write_s + result.commit_s)
    result.cpu_s = {"consume": round(cpu1 - cpu0, 3), "decode": round(cpu_decode, 3),
                    "write": round(cpu_flush * write_share, 3), "commit": round(cpu_flush * (1 - write_share), 3)}
    snapshot = catalog.load_table(identifier).current_snapshot()
    summary = snapshot.summary if snapshot is not None else None
    rows = int(summary["total-records"] or 0) if summary is not None else 0
    if rows != records:
        raise RuntimeError(f"the stage table holds {rows} rows, not {records}")
    return result


def main() -> None:
    """Stages alone, on a broker of their own (and a registry for Avro), into a SQLite catalog."""
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.config import CatalogConfig
    from tabletopic.local.kafka import LocalKafka
    from tabletopic.local.registry import LocalRegistry

    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--format", choices=dataset.FORMATS, default="json")
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        work = Path(tmp)
        kafka = LocalKafka(work / "kafka").start()
        registry = LocalRegistry(work / "registry").start() if args.format == "avro" else None
        try:
            produced = dataset.produce(kafka.bootstrap, f"stages-{args.format}", args.format, args.records,
                                       registry_url=registry.url if registry else None)
            catalog = open_catalog(CatalogConfig(warehouse=str(work / "warehouse")))
            result = run_stages(kafka.bootstrap, catalog, produced.topic, args.format, args.records,
                                registry.url if registry else None)
            json.dump(result.to_json(), sys.stdout, indent=2)
            print()
        finally:
            if registry is not None:
                registry.stop()
            kafka.stop()


if __name__ == "__main__":
    main()
