"""A live writer under kill -9 and compactions running beside it: nothing lost or doubled, the
compactions are `replace` snapshots, and maintenance afterwards keeps recovery and every row."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from tests.support import assert_exactly_once, catalog_of, feed_slowly, log_end, produce, wait_committed, writer_config

SLICE = 8_000
PARTITIONS = 4


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", *args], capture_output=True, text=True, timeout=300)


def test_compaction_beside_a_writer_killed_again_and_again(kafka, new_topic, spawn_writer, tmp_path):
    """Rounds of: a writer starts, a slice of records arrives while it commits, the writer is killed -9; `compact`
    runs again and again beside them. Rounds go on until two compactions have rewritten files (4 to 12 rounds),
    so a writer slow to start cannot leave the compactor one batch of everything and nothing to do."""
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

    def rewrote() -> int:
        return sum("into" in c.stdout and not c.stdout.startswith("compacted maint.events: 0") for c in compactions)

    compactor = threading.Thread(target=compact_repeatedly)
    produced = rounds = 0
    writer = spawn_writer(config)
    try:
        while rounds < 4 or (rewrote() < 2 and rounds < 12):
            writer.wait_for("kafka.assigned", timeout=120)
            feeder = feed_slowly(kafka.bootstrap, topic, SLICE, 1000, 0.5, first=produced)
            produced += SLICE
            writer.wait_for("commit.done", timeout=120)
            if compactor.ident is None:  # started once the table exists
                compactor.start()
            time.sleep(2)
            writer.kill()
            feeder.join()
            writer = spawn_writer(config)
            rounds += 1
        iceberg = catalog_of(config)
        wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300,
                       writer=writer)
    finally:  # a failed round must not leave the compactor running, and the test process waiting on it
        done.set()
        if compactor.ident is not None:
            compactor.join()
    assert writer.stop() == 0, writer.log()

    assert all(c.returncode == 0 for c in compactions), [c.stderr[-2000:] for c in compactions if c.returncode]
    operations = [s.summary.operation.value for s in iceberg.load_table(table).snapshots()]
    assert operations.count("replace") >= 2, operations
    assert rewrote() >= 2, [c.stdout for c in compactions]
    assert_exactly_once(iceberg, config, topic, table, produced)

    # One more commit after the last compaction, then maintenance with no safety margins.
    produce(kafka.bootstrap, topic, ((None, None, json.dumps({"n": n}).encode(), None)
                                     for n in range(produced, produced + 100)))
    writer = spawn_writer(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0
    maintained = cli("maintain", "--config", str(config), "--table", table, "--expire-older-than-hours", "0",
                     "--keep-snapshots", "1", "--orphans-older-than-hours", "0")
    assert maintained.returncode == 0, maintained.stderr
    loaded = iceberg.load_table(table)
    assert len(loaded.snapshots()) <= 2
    assert len(loaded.inspect.files()) <= 4  # two buckets: the compacted file and the last commit's, each
    assert_exactly_once(iceberg, config, topic, table, produced + 100)


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

    writer = spawn_writer(config)
    pid = writer.wait_for("maintenance.started", timeout=60)["pid"]
    writer.wait_for("kafka.assigned", timeout=120)  # records arrive while it commits: many small files
    producer = feed_slowly(kafka.bootstrap, topic, records, 1000, 0.5)
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


def _numbers_by_topic(iceberg, table: str) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    rows = iceberg.load_table(table).scan(selected_fields=("n", "_kafka_topic")).to_arrow()
    found: dict[str, list[int]] = {}
    for n, topic in zip(rows["n"].to_pylist(), rows["_kafka_topic"].to_pylist(), strict=True):
        found.setdefault(topic, []).append(n)
    return {topic: sorted(numbers) for topic, numbers in found.items()}


def test_an_old_deployments_offsets_and_a_tag_neither_pin_history_nor_stop_expiry(kafka, new_topic, spawn_writer,
                                                                                  tmp_path):
    from tabletopic.commit.committer import table_offsets
    from tests.support import audit_cli

    old_topic, topic = new_topic(2), new_topic(2)
    table = "maint.handover"
    # An earlier deployment (its own group, its own topic) wrote the table once; then the current one took over.
    old = writer_config(tmp_path / "old.yaml", kafka.bootstrap, old_topic, table, tmp_path / "wh",
                        group_id="old-deployment", commit={"interval_seconds": 0.3})
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           commit={"interval_seconds": 0.3})
    produce(kafka.bootstrap, old_topic, ((None, None, json.dumps({"n": n}).encode(), None) for n in range(1000)))
    writer = spawn_writer(old)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "old-deployment", log_end(kafka.bootstrap, old_topic, 2), writer=writer)
    assert writer.stop() == 0, writer.log()
    tagged = iceberg.load_table(table).metadata.snapshots[0].snapshot_id
    iceberg.load_table(table).manage_snapshots().create_tag(tagged, "before-handover").commit()

    writer = spawn_writer(config)
    for start in range(0, 4000, 500):  # one commit at least per batch: a history to expire
        produce(kafka.bootstrap, topic, ((None, None, json.dumps({"n": n}).encode(), None)
                                         for n in range(start, start + 500)))
        wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, 2), writer=writer)
    assert writer.stop() == 0, writer.log()
    assert len(iceberg.load_table(table).snapshots()) > 8

    maintained = cli("maintain", "--config", str(config), "--table", table, "--expire-older-than-hours", "0",
                     "--keep-snapshots", "1", "--orphans-older-than-hours", "0")
    assert maintained.returncode == 0, maintained.stderr[-3000:]
    loaded = iceberg.load_table(table)
    # Left: the tagged snapshot and the compaction `maintain` made (newer than its cut-off), which repeats both
    # deployments' offsets as every snapshot tabletopic makes does. The writers' history in between is gone.
    kept = {s.snapshot_id for s in loaded.snapshots()}
    assert tagged in kept and len(kept) == 2, [s.summary for s in loaded.snapshots()]
    carried = loaded.current_snapshot().summary.additional_properties
    assert {"tabletopic.offsets.tests", "tabletopic.offsets.old-deployment"} <= carried.keys()
    assert table_offsets(loaded, "old-deployment") == log_end(kafka.bootstrap, old_topic, 2)

    # The old deployment, started again, resumes from its offsets: nothing read twice.
    produce(kafka.bootstrap, old_topic, ((None, None, json.dumps({"n": n}).encode(), None) for n in range(1000, 1100)))
    writer = spawn_writer(old)
    wait_committed(iceberg, table, "old-deployment", log_end(kafka.bootstrap, old_topic, 2), writer=writer)
    assert writer.stop() == 0, writer.log()
    assert _numbers_by_topic(iceberg, table) == {old_topic: list(range(1100)), topic: list(range(4000))}
    for path, name in ((old, old_topic), (config, topic)):
        audit = audit_cli(path, name, table)
        assert audit.returncode == 0, audit.stdout + audit.stderr


def _wait_event(writer, event: str, table: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.get("event") == event and e.get("table") == table for e in list(writer.events)):
            return
        if writer.process.poll() is not None:
            raise AssertionError(f"writer exited ({writer.process.returncode}):\n{writer.log()}")
        time.sleep(0.2)
    raise AssertionError(f"no {event} of {table} within {timeout}s:\n{writer.log()}")


def test_built_in_maintenance_keeps_pattern_tables_and_dead_letter_tables(kafka, spawn_writer, tmp_path):
    from tabletopic.local.topics import create_topic

    topic = f"mpat-{time.time_ns()}"
    create_topic(kafka.bootstrap, topic, 2)
    table, letters = f"maint.{topic.replace('-', '_')}", f"maint.{topic.replace('-', '_')}__dlq"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, "-", "maint.{topic}", tmp_path / "wh",
                           commit={"interval_seconds": 0.5},
                           table_settings={"topic": None, "topic_pattern": "mpat-[0-9]+"},
                           maintenance={"enabled": True, "check_interval_seconds": 1, "min_small_files": 3,
                                        "expire_interval_seconds": 3, "expire_older_than_hours": 0,
                                        "keep_snapshots": 3})

    def value(n: int) -> bytes:  # every tenth one a dead letter
        return b"{not json" if n % 10 == 0 else json.dumps({"n": n}).encode()

    # The writer first: fed to one that is still starting (a loaded machine), the records would make one
    # commit, too few small files for a compaction.
    writer = spawn_writer(config)
    writer.wait_for("service.started", timeout=120)
    producer = feed_slowly(kafka.bootstrap, topic, 6000, 300, 0.3, value=value)
    for name in (table, letters):
        _wait_event(writer, "compaction.done", name)
        _wait_event(writer, "snapshots.expired", name)
    producer.join()
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, 2), writer=writer)
    assert writer.stop() == 0, writer.log()
    rows = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(rows) == [n for n in range(6000) if n % 10]
    assert iceberg.load_table(letters).scan().count() == 600
    assert any(s.summary.operation.value == "replace" for s in iceberg.load_table(letters).snapshots())
    status = cli("status", "--config", str(config), "--output", "json")
    assert status.returncode == 0, status.stderr[-2000:]
    listed = {s["table"]: s for s in json.loads(status.stdout)}
    assert listed[table]["exists"] and listed[table]["lag"] == 0 and listed[letters]["exists"], listed


def test_compaction_lands_while_writers_append_between_its_attempts(kafka, new_topic, spawn_writer, tmp_path,
                                                                      monkeypatch):
    """Two live writers commit every 0.3 s; compaction's first attempts are each held until one of them has
    appended, so each meets a newer table: it rebases reading no manifest, lands, and every record is once
    in the table with the writers' offsets intact."""
    from tabletopic.commit.committer import table_offsets
    from tabletopic.compaction import replace, rewrite

    records = 30_000  # ~25 s of input: the writers still append while compaction's attempts are held
    topic = new_topic(PARTITIONS)
    table = "maint.race"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh", workers=2,
                           commit={"interval_seconds": 0.3})
    writer = spawn_writer(config)
    writer.wait_for("kafka.assigned", timeout=120)  # the input starts once a writer reads, however slow its start
    producer = feed_slowly(kafka.bootstrap, topic, records, 400, 0.3)
    iceberg = catalog_of(config)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not iceberg.table_exists(table) or len(
            list(iceberg.load_table(table).scan().plan_files())) < 8):
        time.sleep(0.5)

    real_commit = replace.Replacement.commit
    raced: list[int] = []

    def commit_after_a_writers_append(self, base):  # type: ignore[no-untyped-def]
        if len(raced) < 3:
            base_id = base.current_snapshot().snapshot_id
            until = time.monotonic() + 60
            while iceberg.load_table(table).current_snapshot().snapshot_id == base_id and time.monotonic() < until:
                time.sleep(0.05)
            raced.append(base_id)
        return real_commit(self, base)

    monkeypatch.setattr(replace.Replacement, "commit", commit_after_a_writers_append)
    result = rewrite.compact(iceberg, table, 64 << 20)
    assert not result.abandoned and result.files_removed >= 8 and result.attempts >= 4, result
    assert result.manifests_read[1:] == [0] * (result.attempts - 1), result  # the appends' manifests are not read
    producer.join()
    expected = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(iceberg, table, "tests", expected, writer=writer)
    assert writer.stop() == 0, writer.log()
    loaded = iceberg.load_table(table)
    assert "replace" in [s.summary.operation.value for s in loaded.snapshots()]
    assert table_offsets(loaded, "tests") == expected
    assert_exactly_once(iceberg, config, topic, table, records)
