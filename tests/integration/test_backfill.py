"""Backfill: a range from a timestamp into a new table, killed midway and rerun, exactly once; a range
the live table already holds is refused with the reason."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time

from tests.support import catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 4
BEFORE = 50_000
RANGE = 500_000


def records(start: int, stop: int):  # type: ignore[no-untyped-def]
    return ((None, None, json.dumps({"n": n, "pad": "z" * 40}).encode(), None) for n in range(start, stop))


def backfill(config, *args: str) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen([sys.executable, "-m", "tabletopic", "backfill", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_backfill_from_a_timestamp_killed_midway_and_rerun(kafka, new_topic, tmp_path):
    topic = new_topic(PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "live.events", tmp_path / "wh",
                           commit={"interval_seconds": 1})
    produce(kafka.bootstrap, topic, records(0, BEFORE))
    time.sleep(1.5)
    since = dt.datetime.now(dt.UTC).isoformat()
    time.sleep(1.5)
    produce(kafka.bootstrap, topic, records(BEFORE, BEFORE + RANGE))
    args = ("--topic", topic, "--table", "live.events", "--into", "rebuilt.events", "--from-timestamp", since)

    plan = subprocess.run([sys.executable, "-m", "tabletopic", "backfill", "--config", str(config), *args,
                           "--dry-run"], capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert f"total: {RANGE} records into rebuilt.events" in plan.stdout, plan.stdout

    first = backfill(config, *args)
    assert first.stderr is not None
    for line in first.stderr:
        if '"backfill.commit"' in line:
            break
    else:
        raise AssertionError(f"the backfill ended ({first.wait()}) before its first commit")
    first.send_signal(signal.SIGKILL)
    first.communicate()  # reaps it and closes its pipes
    iceberg = catalog_of(config)
    partial = iceberg.load_table("rebuilt.events").scan().count()
    assert 0 < partial < RANGE

    second = backfill(config, *args, "--workers", "2")  # the rest, in two processes sharing the partitions
    _out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    values = iceberg.load_table("rebuilt.events").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert len(values) == RANGE and sorted(values) == list(range(BEFORE, BEFORE + RANGE))
    audit = subprocess.run([sys.executable, "-m", "tabletopic", "audit", "--config", str(config), "--topic", topic,
                            "--table", "rebuilt.events", "--group-id", "tests.backfill", "--from-timestamp", since],
                           capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_backfill_of_a_range_the_live_table_holds_is_refused(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "live.held", tmp_path / "wh")
    produce(kafka.bootstrap, topic, records(0, 2000))
    writer = spawn_writer(config)
    wait_committed(catalog_of(config), "live.held", "tests", log_end(kafka.bootstrap, topic, PARTITIONS),
                   writer=writer)
    assert writer.stop() == 0
    refused = subprocess.run([sys.executable, "-m", "tabletopic", "backfill", "--config", str(config), "--topic",
                              topic, "--table", "live.held", "--from-offset", "0"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "already holds" in refused.stderr and "--into" in refused.stderr
    assert catalog_of(config).load_table("live.held").scan().count() == 2000


def test_a_backfill_fills_what_a_live_table_started_at_latest_lacks_once(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "live.late", tmp_path / "wh",
                           consumer={"start": "latest"})
    produce(kafka.bootstrap, topic, records(0, 2000))  # before the writer: it starts at the end
    older = log_end(kafka.bootstrap, topic, PARTITIONS)
    writer = spawn_writer(config)
    writer.wait_for("kafka.assigned", timeout=60)
    time.sleep(2)
    produce(kafka.bootstrap, topic, records(2000, 3000))
    iceberg = catalog_of(config)
    wait_committed(iceberg, "live.late", "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0
    assert iceberg.load_table("live.late").scan().count() == 1000

    for attempt in range(2):  # the second round finds nothing left to do
        for (_, partition), end in sorted(older.items()):
            done = subprocess.run([sys.executable, "-m", "tabletopic", "backfill", "--config", str(config),
                                   "--topic", topic, "--table", "live.late", "--partitions", f"{partition}:0",
                                   "--to-offset", str(end)], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (attempt, done.stderr[-3000:])
    values = iceberg.load_table("live.late").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(3000))
