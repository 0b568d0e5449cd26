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
    # Into every partition: one the new records all missed (a producer's sticky batches) would hold no offset
    # in the table, and a backfill below it is refused until the live writer commits there.
    produce(kafka.bootstrap, topic, ((n % PARTITIONS, key, value, headers)
                                     for n, (_, key, value, headers) in enumerate(records(2000, 3000))))
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


def run_backfill(config, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "tabletopic", "backfill", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout)


def regional(n: int) -> bytes:
    """Per partition (n % 2), records alternate between region eu and no region (the default table)."""
    return json.dumps({"n": n, **({"region": "eu"} if n // 2 % 2 == 0 else {})}).encode()


def routed_and_pattern_config(tmp_path, kafka, routed_topic: str, pattern: str, **overrides):  # type: ignore[no-untyped-def]
    return writer_config(tmp_path / "c.yaml", kafka.bootstrap, routed_topic, "bf.rest", tmp_path / "wh",
                         tables=[{"table": "bf.rest", "topic": routed_topic, "route_field": "region",
                                  "route_tables": {"eu": "bf.eu"}},
                                 {"table": "bf.{topic}", "topic_pattern": pattern}], **overrides)


def test_pattern_tables_and_route_targets_are_live_tables(kafka, new_topic, spawn_writer, tmp_path):
    stamp = time.time_ns()
    routed, patterned = new_topic(2), f"bfpat-{stamp}"
    from tabletopic.local.topics import create_topic

    create_topic(kafka.bootstrap, patterned, 2)
    produce(kafka.bootstrap, routed, ((n % 2, None, regional(n), None) for n in range(400)))
    produce(kafka.bootstrap, patterned, ((n % 2, None, json.dumps({"n": n}).encode(), None) for n in range(400)))
    config = routed_and_pattern_config(tmp_path, kafka, routed, "bfpat-[0-9]+")
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    pattern_table = f"bf.bfpat_{stamp}"
    for table, topic in ((pattern_table, patterned), ("bf.eu", routed), ("bf.rest", routed)):
        wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, 2), writer=writer)
    assert writer.stop() == 0
    for table, topic, rows in ((pattern_table, patterned, 400), ("bf.eu", routed, 200), ("bf.rest", routed, 200)):
        refused = run_backfill(config, "--topic", topic, "--table", table, "--from-offset", "0")
        assert refused.returncode == 1, (table, refused.stdout, refused.stderr[-2000:])
        assert "refused" in refused.stderr and "already holds" in refused.stderr, refused.stderr[-2000:]
        assert iceberg.load_table(table).scan().count() == rows


def test_a_backfill_of_a_routed_topic_takes_each_tables_share(kafka, new_topic, spawn_writer, tmp_path):
    routed = new_topic(2)
    produce(kafka.bootstrap, routed, ((n % 2, None, regional(n), None) for n in range(400)))  # before the writer
    config = routed_and_pattern_config(tmp_path, kafka, routed, "bfnone-[0-9]+", consumer={"start": "latest"})
    writer = spawn_writer(config)
    writer.wait_for("kafka.assigned", timeout=60)
    time.sleep(2)
    produce(kafka.bootstrap, routed, ((n % 2, None, regional(n), None) for n in range(400, 800)))
    iceberg = catalog_of(config)
    for table in ("bf.eu", "bf.rest"):
        wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, routed, 2), writer=writer)
    assert writer.stop() == 0
    for table in ("bf.rest", "bf.eu"):
        done = run_backfill(config, "--topic", routed, "--table", table, "--from-offset", "0", "--to-offset", "200")
        assert done.returncode == 0, (table, done.stderr[-3000:])
    eu = iceberg.load_table("bf.eu").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    rest = iceberg.load_table("bf.rest").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(eu) == [n for n in range(800) if n // 2 % 2 == 0]
    assert sorted(rest) == [n for n in range(800) if n // 2 % 2 == 1]


def test_a_live_table_without_a_commit_refuses_a_backfill(kafka, new_topic, tmp_path):
    topic = new_topic(2)
    produce(kafka.bootstrap, topic, records(0, 100))
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "live.unwritten", tmp_path / "wh")
    refused = run_backfill(config, "--topic", topic, "--table", "live.unwritten", "--from-offset", "0")
    assert refused.returncode == 1, refused.stdout + refused.stderr[-2000:]
    assert "has not committed" in refused.stderr and "--into" in refused.stderr
    assert not catalog_of(config).table_exists("live.unwritten")
    into = run_backfill(config, "--topic", topic, "--table", "live.unwritten", "--into", "rebuilt.unwritten",
                        "--from-offset", "0")
    assert into.returncode == 0, into.stderr[-2000:]
    assert catalog_of(config).load_table("rebuilt.unwritten").scan().count() == 100


def test_ranges_ending_on_transaction_markers_finish_and_aborted_records_stay_out(kafka, new_topic, tmp_path):
    from confluent_kafka import Producer

    topic = new_topic(1)

    def transaction(numbers: range, commit: bool) -> None:
        producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"bf-{time.time_ns()}"})
        producer.init_transactions(60)
        producer.begin_transaction()
        for n in numbers:
            producer.produce(topic, json.dumps({"n": n}).encode(), partition=0)
        assert producer.flush(60) == 0  # an abort drops what was not sent yet: let the records reach the log
        if commit:
            producer.commit_transaction(60)
        else:
            producer.abort_transaction(60)

    transaction(range(0, 10), commit=True)  # offsets 0..9, its marker at 10
    transaction(range(100, 105), commit=False)  # 11..15, aborted (marker at 16)
    produce(kafka.bootstrap, topic, ((0, None, json.dumps({"n": n}).encode(), None) for n in range(10, 15)))  # 17..21
    transaction(range(15, 20), commit=True)  # 22..26, its marker at 27: the log's end is 28
    deadline = time.monotonic() + 30  # the markers are written after commit_transaction returns
    while log_end(kafka.bootstrap, topic, 1)[(topic, 0)] < 28 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert log_end(kafka.bootstrap, topic, 1)[(topic, 0)] == 28
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "tx.events", tmp_path / "wh",
                           kafka={"isolation.level": "read_uncommitted"})
    first = run_backfill(config, "--topic", topic, "--table", "tx.events", "--into", "tx.copy", "--from-offset", "0",
                         "--to-offset", "11", timeout=60)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "total: 11 records" in first.stdout and "backfill done: 10 records" in first.stdout
    second = run_backfill(config, "--topic", topic, "--table", "tx.events", "--into", "tx.copy", "--from-offset",
                          "11", timeout=60)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "backfill.isolation_forced" in second.stderr
    values = catalog_of(config).load_table("tx.copy").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(20))


def test_a_backfill_below_an_earlier_one_is_refused_not_taken_for_done(kafka, new_topic, tmp_path):
    topic = new_topic(1)
    produce(kafka.bootstrap, topic, records(0, 20))
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "low.events", tmp_path / "wh")
    args = ("--topic", topic, "--table", "low.events", "--into", "low.copy")
    upper = run_backfill(config, *args, "--from-offset", "10")
    assert upper.returncode == 0 and "backfill done: 10 records" in upper.stdout, upper.stderr[-3000:]
    again = run_backfill(config, *args, "--from-offset", "10")  # the same range: nothing left
    assert again.returncode == 0 and "total: 0 records" in again.stdout, again.stderr[-3000:]
    lower = run_backfill(config, *args, "--from-offset", "0", "--to-offset", "10")
    assert lower.returncode == 1, lower.stdout + lower.stderr[-3000:]
    assert "refused" in lower.stderr and "begin below offset 10" in lower.stderr and "--into" in lower.stderr
    values = catalog_of(config).load_table("low.copy").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(10, 20))


THROTTLED = 20_000
LIMIT = 4000.0  # records/s, both processes together


def test_a_throttled_backfill_holds_its_rate_commits_meanwhile_and_a_kill_loses_nothing(kafka, new_topic, tmp_path):
    """Two processes share a limit by their records; each commits on time while it waits, and a kill -9 of the
    parent (its children die with it) midway leaves a table the unthrottled rerun completes exactly once."""
    topic = new_topic(PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "live.events", tmp_path / "wh",
                           commit={"interval_seconds": 1}, consumer={"batch_size": 500})
    produce(kafka.bootstrap, topic, records(0, THROTTLED))
    args = ("--topic", topic, "--table", "live.events", "--into", "paced.events", "--from-offset", "0")

    first = backfill(config, *args, "--workers", "2", "--max-records-per-second", str(LIMIT))
    assert first.stderr is not None
    starts: list[dict[str, object]] = []
    commits = 0
    for line in first.stderr:
        if '"backfill.starts"' in line:
            starts.append(json.loads(line))
        commits += '"backfill.commit"' in line
        if commits >= 3 and len(starts) == 2:
            break
    else:
        raise AssertionError(f"the backfill ended ({first.wait()}) before both children started and it committed "
                             f"three times")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    # The limit is split by the records each child reads, so that both take about as long.
    assert sum(int(str(e["records"])) for e in starts) == THROTTLED, starts
    for event in starts:
        share = LIMIT * int(str(event["records"])) / THROTTLED
        assert abs(float(str(event["max_records_per_second"])) - share) < 1e-6, starts
    iceberg = catalog_of(config)
    partial = iceberg.load_table("paced.events").scan().count()
    # Three commits at a 1 s interval came well before the limit allowed the whole range (>= 4.5 s of reading).
    assert 0 < partial < THROTTLED

    rerun = run_backfill(config, *args, "--workers", "2", timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    values = iceberg.load_table("paced.events").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert len(values) == THROTTLED and sorted(values) == list(range(THROTTLED))
    audit = subprocess.run([sys.executable, "-m", "tabletopic", "audit", "--config", str(config), "--topic", topic,
                            "--table", "paced.events", "--group-id", "tests.backfill"],
                           capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_limit_that_is_no_rate_is_refused(kafka, new_topic, tmp_path):
    topic = new_topic(1)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "live.events", tmp_path / "wh")
    for bad in ("0", "-5", "nan", "inf"):
        done = run_backfill(config, "--topic", topic, "--table", "live.events", "--into", "x.y", "--from-offset", "0",
                            "--max-records-per-second", bad)
        assert done.returncode != 0 and "--max-records-per-second" in done.stderr, (bad, done.stderr)


def test_a_backfill_throttled_to_longer_naps_than_the_poll_interval_reads_on(kafka, new_topic, tmp_path):
    """The range reader is assigned its partitions, not a group's member: a throttle that leaves it unpolled past
    max.poll.interval.ms costs no rebalance and no error, and the range lands whole."""
    topic = new_topic(1)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "live.events", tmp_path / "wh",
                           kafka={"max.poll.interval.ms": "6000"}, consumer={"batch_size": 1000})
    produce(kafka.bootstrap, topic, records(0, 1200))
    # At 100 records/s, the second batch of 1000 is read ten seconds after the first: past the 6 s interval.
    done = run_backfill(config, "--topic", topic, "--table", "live.events", "--into", "slow.events",
                        "--from-offset", "0", "--max-records-per-second", "100", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backfill done: 1200 records" in done.stdout
    assert "max.poll" not in done.stderr.lower() and "kafka.error" not in done.stderr, done.stderr[-3000:]
    values = catalog_of(config).load_table("slow.events").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(1200))
