"""A backlog far larger than the buffer cap: the writer's peak RSS stays under the cap plus a stated
overhead, as the OS counts it (VmHWM)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

RECORDS = 1_000_000
PARTITIONS = 24
CAP = 16 * 1024 * 1024
# What a worker holds besides its buffers, measured here: an idle worker after one commit
# (CPython with pyarrow, pyiceberg, SQLAlchemy, librdkafka) peaks at ~170 MiB; librdkafka's
# prefetch queue (16 MiB, tabletopic's default) plus the fetch responses in flight (up to 1 MiB
# per partition: 24 MiB here); one poll batch as Python objects and Arrow, the Parquet writer's
# working set and the allocators' retained pages, the rest (seen from 300 to 345 MiB in all with
# a 2 MiB queue, 419 MiB with 16 MiB). Without the cap this backlog would be buffered whole:
# measured at 560 MiB and growing after 45 s.
OVERHEAD = 450 * 1024 * 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_million_record_backlog_stays_under_the_memory_cap(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "memory.events"
    pad = "z" * 400  # ~420 MB of JSON: far more than the cap, and than the overhead
    produce(kafka.bootstrap, topic, ((None, None, json.dumps({"n": n, "pad": pad}).encode(), None)
                                     for n in range(RECORDS)))
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    # The per-table cap is out of reach, and the backlog arrives far faster than the interval:
    # only the process-wide cap keeps the buffers small (the interval flushes the tail).
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           commit={"interval_seconds": 20, "max_buffer_bytes": 8 * 1024**3,
                                   "max_process_buffer_bytes": CAP})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=600, writer=writer)
    peak = peak_rss(writer.process.pid)
    assert writer.stop() == 0
    print(f"peak RSS {peak / 2**20:.0f} MiB for a {CAP / 2**20:.0f} MiB cap and a {RECORDS} record backlog")
    assert peak < CAP + OVERHEAD, f"peak RSS {peak / 2**20:.0f} MiB"
    assert iceberg.load_table(table).scan().count() == RECORDS
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout


def test_partitions_assigned_while_paused_for_memory_and_held_are_resumed_when_both_end(kafka, s3, new_topic,
                                                                                         spawn_writer, tmp_path):
    """The table's commits fail (its bucket is missing: it is held, retrying now and then) until its
    buffer reaches the process cap and consumption pauses for memory; then the topic gains partitions,
    assigned to the writer while both reasons stand. Once the bucket exists, the hold and the memory
    pause both end, and every partition, old and new, is read to its end."""
    import uuid

    import pyarrow as pa
    from confluent_kafka.admin import AdminClient, NewPartitions

    from tabletopic.catalog.tables import TABLE_PROPERTIES, table_schema

    topic = new_topic(2)
    table = "memory.held"
    bucket = f"later-{uuid.uuid4().hex[:8]}"
    catalog = {"uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse",
               **s3.catalog_properties()}
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, "", catalog=catalog,
                           kafka={"topic.metadata.refresh.interval.ms": "1000"},
                           commit={"interval_seconds": 1, "max_process_buffer_bytes": 1024 * 1024})
    iceberg = catalog_of(config)
    iceberg.create_namespace_if_not_exists("memory")
    value_schema = pa.schema([pa.field("n", pa.int64()), pa.field("pad", pa.string())])
    iceberg.create_table(table, schema=table_schema(value_schema, True),
                         properties={**TABLE_PROPERTIES, "write.data.path": f"s3://{bucket}/held"})
    pad = "p" * 1000
    produce(kafka.bootstrap, topic, ((None, None, json.dumps({"n": n, "pad": pad}).encode(), None)
                                     for n in range(4000)))  # ~4 MB: past the 1 MiB cap
    writer = spawn_writer(config)
    writer.wait_for("table.halted", timeout=120)
    writer.wait_for("memory.paused", timeout=120)

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.create_partitions([NewPartitions(topic, 4)]).values():
        future.result(timeout=30)
    time.sleep(2)  # the new partitions reach every broker's metadata before records are sent to them
    produce(kafka.bootstrap, topic, ((p, None, json.dumps({"n": n, "pad": pad}).encode(), None)
                                     for p, n in ((2 + n % 2, n) for n in range(4000, 4400))))
    writer.wait_for("kafka.assigned", timeout=60)  # the new partitions, while paused and held
    s3.create_bucket(bucket)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, 4), timeout=240, writer=writer)
    assert writer.stop() == 0, writer.log()
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(4400))
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout
