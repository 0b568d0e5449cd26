"""`tabletopic rebuild` at its edges: a cutover killed after its freeze or after its journal (the freeze
lapses, the live writer goes on in the old table, a rerun cuts over exactly once), dead letters rebuilt
with their table, an upsert table rebuilt as the current state per key, a second rebuild of a table
refused, a log that lost history to retention refused before anything is built, and rebuilt with
`--seed-from-table` (the rows below the log start re-projected from the live table, in one commit).

A real broker and the embedded SQLite catalog with a local warehouse (the catalog-specific paths are in
test_rebuild.py, on the REST catalog over S3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from tabletopic.catalog import reader
from tabletopic.commit.committer import table_offsets
from tabletopic.local.kafka import LocalKafka
from tests.support import (
    Writer,
    audit_cli,
    audit_values_cli,
    catalog_of,
    create_topic_with,
    log_end,
    produce,
    wait_committed,
    writer_config,
)

PARTITIONS = 4
TABLE = "shop.items"
RENAMED = {"partition_by": ["bucket(4, n)"], "rename_columns": {"name": "label"}}


def value(n: int) -> bytes:
    return json.dumps({"n": n, "name": f"item-{n}"}).encode()


def rebuild(config: Path, *flags: str, failpoint: str | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"TABLETOPIC_FAILPOINT": failpoint} if failpoint else {})}
    return subprocess.run([sys.executable, "-m", "tabletopic", "rebuild", "--config", str(config), "--table", TABLE,
                           *flags], capture_output=True, text=True, timeout=timeout, env=env)


def configs(tmp_path: Path, kafka: LocalKafka, topic: str, new: dict[str, Any],
            old: dict[str, Any] | None = None) -> tuple[Path, Path]:
    old_path = writer_config(tmp_path / "old.yaml", kafka.bootstrap, topic, TABLE, tmp_path / "wh",
                             table_settings=old or {})
    new_path = writer_config(tmp_path / "new.yaml", kafka.bootstrap, topic, TABLE, tmp_path / "wh",
                             table_settings={**(old or {}), **new})
    return old_path, new_path


def wait_until(condition: Any, writer: Writer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, writer.log()
        assert writer.process.poll() is None, writer.log()
        time.sleep(0.2)


def test_a_cutover_killed_after_its_freeze_leaves_the_old_table_live_then_a_rerun_cuts_over_with_dead_letters(
        kafka: LocalKafka, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(PARTITIONS)
    old, new = configs(tmp_path, kafka, topic, RENAMED)
    produce(kafka.bootstrap, topic, ((None, None, value(n), None) for n in range(20_000)))
    produce(kafka.bootstrap, topic, [(1, None, b"{not json", None)])
    writer = Writer(old)
    iceberg = catalog_of(old)
    try:
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        killed = rebuild(new, "--freeze-seconds", "25", failpoint="cutover.frozen")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        # Frozen: the live writer's commits wait; once the freeze lapses they go on into the old table.
        produce(kafka.bootstrap, topic, ((None, None, value(n), None) for n in range(20_000, 21_000)))
        writer.wait_for("table.frozen_for_cutover", timeout=60)
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=120,
                       writer=writer)
        assert not iceberg.table_exists(f"{TABLE}__previous")

        done = rebuild(new)
        assert done.returncode == 0, done.stderr[-3000:]
        # An idle writer learns of the swap at its next commit.
        produce(kafka.bootstrap, topic, ((None, None, value(n), None) for n in range(21_000, 22_000)))
        writer.wait_for("table.projection_adopted", timeout=60)
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        assert iceberg.load_table(TABLE).scan().count() == 22_000
        assert "label" in [f.name for f in iceberg.load_table(TABLE).schema().fields]
        # Each version in a folder of its own: orphan removal of one never takes the other's files.
        folders = [iceberg.load_table(name).location().rstrip("/") + "/" for name in
                   (TABLE, f"{TABLE}__previous", f"{TABLE}__dlq", f"{TABLE}__previous__dlq")]
        assert not any(a.startswith(b) for a in folders for b in folders if a is not b), folders
        # The bad record is a dead letter of the new version too; the old version's letters went with it.
        for name in (f"{TABLE}__dlq", f"{TABLE}__previous__dlq"):
            letters = iceberg.load_table(name).scan().to_arrow().to_pylist()
            assert [(r["_kafka_partition"], r["reason"]) for r in letters] == [(1, "malformed_json")], (name, letters)
        audit = audit_values_cli(new, topic, TABLE)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()


def test_a_cutover_killed_after_its_journal_whose_freeze_lapsed_is_abandoned_and_done_again(
        kafka: LocalKafka, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(PARTITIONS)
    old, new = configs(tmp_path, kafka, topic, RENAMED)
    produce(kafka.bootstrap, topic, ((None, None, value(n), None) for n in range(10_000)))
    writer = Writer(old)
    iceberg = catalog_of(old)
    try:
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        killed = rebuild(new, "--freeze-seconds", "20", failpoint="cutover.stamped")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert iceberg.table_exists(f"{TABLE}__rebuild") and iceberg.table_exists(TABLE)
        # The freeze lapses and the live writer takes new records into the old table: the journal is stale.
        produce(kafka.bootstrap, topic, ((None, None, value(n), None) for n in range(10_000, 11_000)))
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=120,
                       writer=writer)

        done = rebuild(new)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "cutover.abandoned" in done.stderr, done.stderr[-3000:]
        produce(kafka.bootstrap, topic, ((None, None, value(n), None) for n in range(11_000, 11_500)))
        writer.wait_for("table.projection_adopted", timeout=60)
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        assert iceberg.load_table(TABLE).scan().count() == 11_500
        audit = audit_values_cli(new, topic, TABLE)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()


def keyed(n: int, key: int, deleted: bool) -> tuple[int, bytes, bytes | None, None]:
    raw = None if deleted else json.dumps({"id": key, "qty": n}).encode()
    return key % PARTITIONS, json.dumps({"id": key}).encode(), raw, None


def test_an_upsert_table_rebuilt_under_a_new_spec_holds_the_latest_value_per_key(
        kafka: LocalKafka, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(PARTITIONS)
    old, new = configs(tmp_path, kafka, topic, {"partition_by": ["bucket(8, id)"]}, old={"mode": "upsert"})
    records = [keyed(n, (n * 7919) % 500, n % 11 == 0) for n in range(12_000)]
    produce(kafka.bootstrap, topic, records)
    writer = Writer(old)
    iceberg = catalog_of(old)
    try:
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        done = rebuild(new)
        assert done.returncode == 0, done.stderr[-3000:]
        later = [keyed(n, (n * 31) % 600, n % 5 == 0) for n in range(12_000, 14_000)]
        produce(kafka.bootstrap, topic, later)
        writer.wait_for("table.projection_adopted", timeout=60)
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        expected: dict[int, int] = {}
        for _, raw_key, raw_value, _ in [*records, *later]:
            key = json.loads(raw_key)["id"]
            if raw_value is None:
                expected.pop(key, None)
            else:
                expected[key] = json.loads(raw_value)["qty"]
        rows = reader.read(iceberg.load_table(TABLE), columns=("id", "qty")).to_pylist()
        assert len(rows) == len(expected) and {r["id"]: r["qty"] for r in rows} == expected
        assert "bucket[8]" in str(iceberg.load_table(TABLE).spec())
        audit = audit_cli(new, topic, TABLE)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()


def test_a_second_rebuild_of_a_table_is_refused_and_a_log_short_of_the_history_is_refused_before_building(
        kafka: LocalKafka, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(PARTITIONS)
    old, _ = configs(tmp_path, kafka, topic, RENAMED)
    # Small batches: the throttled rebuild below stays well short of catching up while the test acts.
    new = writer_config(tmp_path / "slow.yaml", kafka.bootstrap, topic, TABLE, tmp_path / "wh",
                        consumer={"batch_size": 100}, table_settings=RENAMED)
    produce(kafka.bootstrap, topic, ((p, None, value(n), None) for n in range(8_000) for p in [n % PARTITIONS]))
    writer = Writer(old)
    iceberg = catalog_of(old)
    try:
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        slow = subprocess.Popen([sys.executable, "-m", "tabletopic", "rebuild", "--config", str(new), "--table", TABLE,
                                 "--max-records-per-second", "200"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            deadline = time.monotonic() + 60
            while "tabletopic.rebuild.lease" not in iceberg.load_table(TABLE).metadata.properties:
                assert slow.poll() is None and time.monotonic() < deadline, slow.communicate()[1][-3000:]
                time.sleep(0.2)
            second = rebuild(new)
            assert second.returncode == 1 and "two at once are refused" in second.stderr, second.stderr[-3000:]
            while (table_offsets(iceberg.load_table(f"{TABLE}__rebuild"), "tests").get((topic, 2), 0)
                   if iceberg.table_exists(f"{TABLE}__rebuild") else 0) == 0:
                assert slow.poll() is None and time.monotonic() < deadline, slow.communicate()[1][-3000:]
                time.sleep(0.2)
        finally:
            slow.kill()
            slow.communicate()

        # Retention took the first 1000 records of partition 2, past where the killed rebuild stands: the rerun
        # stops with the reason (never spins on the error), and a fresh start is refused before building.
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        for future in admin.delete_records([TopicPartition(topic, 2, 1000)]).values():
            future.result(timeout=30)
        resumed = rebuild(new)
        assert resumed.returncode == 1 and "no longer holds the offsets the rebuild reads next" in resumed.stderr, \
            resumed.stderr[-3000:]
        abandon = rebuild(new, "--abandon")
        assert abandon.returncode == 0 and not iceberg.table_exists(f"{TABLE}__rebuild"), abandon.stderr
        refused = rebuild(new)
        assert refused.returncode == 1, refused.stderr[-3000:]
        assert "partition 2: 1000 rows below offset 1000" in refused.stderr, refused.stderr[-3000:]
        assert not iceberg.table_exists(f"{TABLE}__rebuild")
        assert writer.stop() == 0, writer.log()

        # Retention took records the live table never read (its writer stopped): even seeded, a rebuild would start
        # past them and no audit of the new version would show the loss. Refused, naming the range.
        produce(kafka.bootstrap, topic, ((2, None, value(n), None) for n in range(8_000, 8_400)))
        for future in admin.delete_records([TopicPartition(topic, 2, 2200)]).values():
            future.result(timeout=30)
        for flags in ((), ("--seed-from-table",)):
            short = rebuild(new, *flags)
            assert short.returncode == 1, short.stderr[-3000:]
            assert "never read (partition 2: offsets 2000..2199)" in short.stderr, short.stderr[-3000:]
    finally:
        writer.kill()


def test_an_append_table_of_a_compacted_topic_is_not_rebuilt_from_what_compaction_left(
        kafka: LocalKafka, tmp_path: Path) -> None:
    topic = create_topic_with(kafka.bootstrap, f"compacted-{os.getpid()}-{time.monotonic_ns()}", PARTITIONS,
                              {"cleanup.policy": "compact"})
    old, new = configs(tmp_path, kafka, topic, RENAMED)
    produce(kafka.bootstrap, topic, ((None, str(n % 50).encode(), value(n), None) for n in range(1_000)))
    writer = Writer(old)
    iceberg = catalog_of(old)
    try:
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        refused = rebuild(new)
        assert refused.returncode == 1 and "is compacted" in refused.stderr, refused.stderr[-3000:]
        assert not iceberg.table_exists(f"{TABLE}__rebuild")
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()


def test_a_log_short_of_the_history_is_rebuilt_with_the_rows_below_its_start_seeded_from_the_live_table(
        kafka: LocalKafka, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(PARTITIONS)
    old, new = configs(tmp_path, kafka, topic, RENAMED)
    produce(kafka.bootstrap, topic, [(1, None, b"{not json", None)])  # a dead letter the log will lose
    produce(kafka.bootstrap, topic, ((p, None, value(n), None) for n in range(20_000) for p in [n % PARTITIONS]))
    writer = Writer(old)
    iceberg = catalog_of(old)
    try:
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        for future in admin.delete_records([TopicPartition(topic, p, 2_000) for p in range(PARTITIONS)]).values():
            future.result(timeout=30)
        refused = rebuild(new)
        assert refused.returncode == 1 and "--seed-from-table" in refused.stderr, refused.stderr[-3000:]
        assert not iceberg.table_exists(f"{TABLE}__rebuild")

        # Killed right after the seed commit: the rerun resumes from its offsets and seeds nothing again.
        killed = rebuild(new, "--seed-from-table", failpoint="rebuild.seeded")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        seeded = iceberg.load_table(f"{TABLE}__rebuild")
        assert seeded.scan().count() == 7_999  # partition 1 began with the dead letter
        assert table_offsets(seeded, "tests") == {(topic, p): 2_000 for p in range(PARTITIONS)}
        done = rebuild(new, "--seed-from-table")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "rebuild.seeded" not in done.stderr, done.stderr[-3000:]

        rows = reader.read(iceberg.load_table(TABLE), columns=("_kafka_partition", "_kafka_offset", "n", "label"))
        coordinates = list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist(), strict=True))
        expected = {(p, o) for p in range(PARTITIONS) for o in range(5_000 + (p == 1)) if (p, o) != (1, 0)}
        assert len(coordinates) == 20_000 and set(coordinates) == expected
        # The seeded rows under the new projection too: `name` is `label` in every row.
        assert rows["label"].to_pylist() == [f"item-{n}" for n in rows["n"].to_pylist()]
        letters = iceberg.load_table(f"{TABLE}__dlq").scan().to_arrow().to_pylist()
        assert [(r["_kafka_partition"], r["_kafka_offset"], r["reason"]) for r in letters] == \
            [(1, 0, "malformed_json")], letters
        audit = audit_values_cli(new, topic, TABLE)  # the offsets, then the log's records under the new projection
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "below the log start" in audit.stdout, audit.stdout
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()


def test_an_upsert_table_seeded_from_the_live_table_takes_later_changes_of_its_seeded_keys(
        kafka: LocalKafka, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(PARTITIONS)
    old, new = configs(tmp_path, kafka, topic, {"partition_by": ["bucket(8, id)"]}, old={"mode": "upsert"})
    records = [keyed(n, n % 400, False) for n in range(800)] + [keyed(n, (n * 7) % 200, n % 9 == 0)
                                                                for n in range(800, 2_000)]
    produce(kafka.bootstrap, topic, records)
    writer = Writer(old)
    iceberg = catalog_of(old)
    try:
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        for future in admin.delete_records([TopicPartition(topic, p, 200) for p in range(PARTITIONS)]).values():
            future.result(timeout=30)
        killed = rebuild(new, "--seed-from-table", failpoint="rebuild.seeded")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        seeded = reader.read(iceberg.load_table(f"{TABLE}__rebuild"), columns=("id",))
        seeded_keys = set(seeded["id"].to_pylist())
        assert seeded_keys == set(range(200, 400))  # the keys last written below the log start, once each
        assert seeded.num_rows == 200
        # Changes of seeded keys after the seed: the rebuild's replay, then the live writer in the new table.
        touched = sorted(seeded_keys)[:40]
        during = [keyed(n, key, n % 2 == 0) for n, key in enumerate(touched, start=2_000)]
        produce(kafka.bootstrap, topic, during)
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        done = rebuild(new, "--seed-from-table")
        assert done.returncode == 0, done.stderr[-3000:]
        after = [keyed(n, key, n % 3 == 0) for n, key in enumerate(sorted(seeded_keys)[40:80], start=3_000)]
        produce(kafka.bootstrap, topic, after)
        writer.wait_for("table.projection_adopted", timeout=60)
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        expected: dict[int, int] = {}
        for _, raw_key, raw_value, _ in [*records, *during, *after]:
            key = json.loads(raw_key)["id"]
            if raw_value is None:
                expected.pop(key, None)
            else:
                expected[key] = json.loads(raw_value)["qty"]
        rows = reader.read(iceberg.load_table(TABLE), columns=("id", "qty")).to_pylist()
        assert len(rows) == len(expected) and {r["id"]: r["qty"] for r in rows} == expected
        audit = audit_cli(new, topic, TABLE)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "below the log start" in audit.stdout, audit.stdout
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()
