"""Compacted topics against the real broker (docs/compatibility.md, brokers x features): `cleanup.policy=compact`
leaves offset gaps everywhere; an append table and an upsert table read such a topic whole, a backfill pads
its range where the log holds no record at its end, `tabletopic audit` is clean, nothing stalls.

Keyed records with many overwrites are produced in rounds, segments rolled between rounds (`segment.ms`), and
the test waits until the log cleaner has really left gaps, read back offset by offset. What each offset held is
known from the delivery reports: a table row must be a produced record at its offset, and every record a
consumer reads afterwards must be in the table once (the cleaner may go on while the writers read)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from tabletopic.catalog import reader
from tabletopic.commit.committer import table_offsets
from tests.support import audit_cli, catalog_of, create_topic_with, log_end, wait_committed, writer_config

PARTITIONS = 2
KEYS = 60
ROUNDS = 10
DEADLINE_S = 90.0
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": "100",  # a segment rolls at the first append 100 ms after it began: one or more per round
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
}

Record = tuple[bytes, bytes | None]  # (key, value)


def key(k: int) -> bytes:
    return json.dumps({"id": k}).encode()


def history() -> list[tuple[int, bytes, bytes | None]]:
    """(round, key, value). Most keys change every round; every fifth is deleted in round 6 (every tenth comes back
    in round 8); every third other one changes last in round 7. The cleaner keeps the newest record per key below
    the active segment (the last round's): survivors of rounds 6 to 8 with gaps between them, in each partition."""
    records = []
    n = 0
    for round_ in range(ROUNDS):
        for k in range(KEYS):
            value: bytes | None = json.dumps({"id": k, "v": f"r{round_}", "n": n}).encode()
            if k % 5 == 0:
                if round_ == 6:
                    value = None
                elif round_ > 6 and not (round_ == 8 and k % 10 == 0):
                    continue
            elif k % 3 == 0 and round_ > 7:
                continue
            records.append((round_, key(k), value))
            n += 1
    return records


def produce_rounds(bootstrap: str, topic: str) -> dict[tuple[int, int], Record]:
    """(partition, offset) -> what was produced there; each key on one partition, as a keyed producer puts it."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    produced: dict[tuple[int, int], Record] = {}

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        produced[(message.partition(), message.offset())] = (message.key(), message.value())

    by_round: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for round_, raw_key, value in history():
        by_round.setdefault(round_, []).append((raw_key, value))
    for round_ in sorted(by_round):
        for raw_key, value in by_round[round_]:
            partition = json.loads(raw_key)["id"] % PARTITIONS
            producer.produce(topic, key=raw_key, value=value, partition=partition, on_delivery=delivered)
        assert producer.flush(60) == 0
        time.sleep(0.15)  # past segment.ms: the next round's first append rolls a new segment
    return produced


def consume_all(bootstrap: str, topic: str) -> dict[tuple[int, int], Record]:
    """What a read-committed consumer reads of the whole topic now, by (partition, offset)."""
    ends = log_end(bootstrap, topic, PARTITIONS)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tests-compacted-read",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    found: dict[tuple[int, int], Record] = {}
    pending = {p for p in range(PARTITIONS) if ends[(topic, p)] > 0}
    deadline = time.monotonic() + 60
    try:
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    pending.discard(message.partition())
                    continue
                found[(message.partition(), message.offset())] = (message.key(), message.value())
    finally:
        consumer.close()
    assert not pending, f"partitions {pending} not read to their end"
    return found


def wait_compacted(bootstrap: str, topic: str, produced: dict[tuple[int, int], Record]) -> None:
    """Until the cleaner has removed records between records in every partition (a cleaning that ran while the
    rounds were produced leaves gaps only below the rest: the next one, `log.cleaner.backoff.ms` later, mixes)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        present = consume_all(bootstrap, topic)
        if all(between_records(produced, present, p) for p in range(PARTITIONS)):
            return
        time.sleep(2)
    raise AssertionError(f"the log cleaner left no gap between records of {topic} within {DEADLINE_S}s")


def between_records(produced: dict[tuple[int, int], Record], present: dict[tuple[int, int], Record],
                    partition: int) -> list[int]:
    """Offsets of `partition` that hold no record any more, above its first record and below its last."""
    offsets = [o for p, o in present if p == partition]
    if not offsets:
        return []
    low, high = min(offsets), max(offsets)
    return sorted(o for p, o in set(produced) - set(present) if p == partition and low < o < high)


def latest_per_key(records: dict[tuple[int, int], Record]) -> dict[int, dict]:
    state: dict[int, dict] = {}
    for _, (raw_key, value) in sorted(records.items()):
        k = json.loads(raw_key)["id"]
        if value is None:
            state.pop(k, None)
        else:
            state[k] = json.loads(value)
    return state


def assert_whole(rows: list[dict], produced: dict[tuple[int, int], Record], present: dict[tuple[int, int], Record],
                 below: dict[int, int] | None = None) -> None:
    """Each row is the record produced at its offset, once; each record a consumer reads now (below `below`) is
    a row."""
    at = [(r["_kafka_partition"], r["_kafka_offset"]) for r in rows]
    assert len(at) == len(set(at)), "a record twice"
    for row in rows:
        _, value = produced[(row["_kafka_partition"], row["_kafka_offset"])]
        record = {"id": None, "n": None} if value is None else json.loads(value)  # a tombstone: a row of nulls
        assert (row["id"], row["n"]) == (record["id"], record["n"]), row
    wanted = {tp for tp in present if below is None or tp[1] < below[tp[0]]}
    assert wanted <= set(at), f"records the table lacks: {sorted(wanted - set(at))[:10]}"


def tabletopic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", *args], capture_output=True, text=True, timeout=180)


def test_append_upsert_and_backfill_read_a_compacted_topic_whole(kafka, spawn_writer, tmp_path: Path):
    topic = create_topic_with(kafka.bootstrap, f"compact-{uuid.uuid4().hex[:10]}", PARTITIONS, COMPACTED)
    produced = produce_rounds(kafka.bootstrap, topic)
    wait_compacted(kafka.bootstrap, topic, produced)
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)

    warehouse = tmp_path / "wh"
    appended = writer_config(tmp_path / "append.yaml", kafka.bootstrap, topic, "compact.appended", warehouse,
                             group_id="compact-append")
    upserted = writer_config(tmp_path / "upsert.yaml", kafka.bootstrap, topic, "compact.state", warehouse,
                             group_id="compact-upsert", table_settings={"mode": "upsert"})
    writers = [spawn_writer(appended), spawn_writer(upserted)]
    catalog = catalog_of(appended)
    wait_committed(catalog, "compact.appended", "compact-append", ends, timeout=DEADLINE_S, writer=writers[0])
    wait_committed(catalog, "compact.state", "compact-upsert", ends, timeout=DEADLINE_S, writer=writers[1])
    for writer in writers:
        assert writer.stop() == 0, writer.log()
    present = consume_all(kafka.bootstrap, topic)

    rows = reader.read(catalog.load_table("compact.appended")).to_pylist()
    assert_whole(rows, produced, present)
    assert table_offsets(catalog.load_table("compact.appended"), "compact-append") == ends
    state = {r["id"]: {"id": r["id"], "v": r["v"], "n": r["n"]}
             for r in reader.read(catalog.load_table("compact.state")).to_pylist()}
    assert state == latest_per_key(present) == latest_per_key(produced)
    for config, table in ((appended, "compact.appended"), (upserted, "compact.state")):
        audit = audit_cli(config, topic, table)
        assert audit.returncode == 0, audit.stdout + audit.stderr

    # A backfill whose range ends where compaction left no record: done at its end, its offsets padded to it.
    end = between_records(produced, present, 0)[0] + 1  # the range's last offset is a gap, records below it
    copy = "compact.copy"
    first = tabletopic("backfill", "--config", str(appended), "--topic", topic, "--table", "compact.appended",
                       "--into", copy, "--from-offset", "0", "--to-offset", str(end))
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    bounds = {p: min(end, ends[(topic, p)]) for p in range(PARTITIONS)}
    padded = {(topic, p): n for p, n in bounds.items()}
    assert table_offsets(catalog.load_table(copy), "compact-append.backfill") == padded
    assert_whole(reader.read(catalog.load_table(copy)).to_pylist(), produced, present, below=bounds)
    rest = tabletopic("backfill", "--config", str(appended), "--topic", topic, "--table", "compact.appended",
                      "--into", copy, "--from-offset", str(end))
    assert rest.returncode == 0, rest.stdout + rest.stderr[-3000:]
    assert "the log ended at" not in rest.stderr
    assert table_offsets(catalog.load_table(copy), "compact-append.backfill") == ends
    assert_whole(reader.read(catalog.load_table(copy)).to_pylist(), produced, present)
    audit = tabletopic("audit", "--config", str(appended), "--group-id", "compact-append.backfill", "--topic", topic,
                       "--table", copy)
    assert audit.returncode == 0, audit.stdout + audit.stderr
