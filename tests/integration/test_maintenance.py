"""A live writer under kill -9 and compactions running beside it: nothing lost or doubled, the
compactions are `replace` snapshots, and maintenance afterwards keeps recovery and every row."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from tests.support import assert_exactly_once, catalog_of, feed_slowly, log_end, produce, wait_committed, writer_config

RECORDS = 60_000
PARTITIONS = 4


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", *args], capture_output=True, text=True, timeout=300)


def test_compaction_beside_a_writer_killed_again_and_again(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "maint.events"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           commit={"interval_seconds": 0.5}, consumer={"batch_size": 2000},
                           table_settings={"partition_by": ["bucket(2, n)"]})
    done = threading.Event()

    compactions: list[subprocess.CompletedProcess[str]] = []

    def compact_repeatedly() -> None:
        while not done.is_set():
            compactions.append(cli("compact", "--config", str(config), "--table", table,
                                   "--target-file-size", str(64 << 20)))
            time.sleep(1.0)

    producer = feed_slowly(kafka.bootstrap, topic, RECORDS, 2000, 1.0)
    writer = spawn_writer(config)
    writer.wait_for("commit.done", timeout=120)
    compactor = threading.Thread(target=compact_repeatedly)
    compactor.start()
    for _ in range(4):
        time.sleep(4)
        writer.kill()
        writer = spawn_writer(config)
    producer.join()
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300, writer=writer)
    done.set()
    compactor.join()
    assert writer.stop() == 0, writer.log()

    assert all(c.returncode == 0 for c in compactions), [c.stderr[-2000:] for c in compactions if c.returncode]
    operations = [s.summary.operation.value for s in iceberg.load_table(table).snapshots()]
    assert operations.count("replace") >= 2, operations
    assert sum("into" in c.stdout and not c.stdout.startswith("compacted maint.events: 0") for c in compactions) >= 2
    assert_exactly_once(iceberg, config, topic, table, RECORDS)

    # One more commit after the last compaction, then maintenance with no safety margins.
    produce(kafka.bootstrap, topic, ((None, None, json.dumps({"n": n}).encode(), None)
                                     for n in range(RECORDS, RECORDS + 100)))
    writer = spawn_writer(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0
    maintained = cli("maintain", "--config", str(config), "--table", table, "--expire-older-than-hours", "0",
                     "--keep-snapshots", "1", "--orphans-older-than-hours", "0")
    assert maintained.returncode == 0, maintained.stderr
    loaded = iceberg.load_table(table)
    assert len(loaded.snapshots()) <= 2
    assert len(loaded.inspect.files()) <= 4  # two buckets: the compacted file and the last commit's, each
    assert_exactly_once(iceberg, config, topic, table, RECORDS + 100)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_built_in_maintenance_compacts_while_the_writer_runs_and_dies_with_it(kafka, new_topic, spawn_writer,
                                                                              tmp_path):
    records = 20_000
    topic = new_topic(PARTITIONS)
    table = "maint.builtin"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           commit={"interval_seconds": 0.5},
                           maintenance={"enabled": True, "check_interval_seconds": 1, "min_small_files": 6,
                                        "expire_interval_seconds": 3, "expire_older_than_hours": 0,
                                        "keep_snapshots": 3})

    producer = feed_slowly(kafka.bootstrap, topic, records, 1000, 0.5)
    writer = spawn_writer(config)
    pid = writer.wait_for("maintenance.started", timeout=60)["pid"]
    writer.wait_for("compaction.done", timeout=120)
    writer.wait_for("snapshots.expired", timeout=120)
    writer.kill()
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the maintenance process outlived a writer killed with -9"
    producer.join()

    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    pid = writer.wait_for("maintenance.started", timeout=60)["pid"]
    assert writer.stop() == 0, writer.log()
    assert not _alive(pid)
    assert_exactly_once(iceberg, config, topic, table, records)
