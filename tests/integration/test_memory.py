"""A backlog far larger than the buffer cap: the writer's peak RSS stays under the cap plus a stated
overhead, as the OS counts it (VmHWM)."""

from __future__ import annotations

import json
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
