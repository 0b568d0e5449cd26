"""The topic deleted and recreated under a running writer: the table stops with the reason and the
command that fixes it, takes no record silently, and after `offsets reset` the new records land once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tabletopic.local.topics import create_topic, delete_topic
from tests.support import catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 2


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", *args], capture_output=True, text=True, timeout=120)


def records(start: int, stop: int):  # type: ignore[no-untyped-def]
    return ((None, None, json.dumps({"n": n}).encode(), None) for n in range(start, stop))


def test_a_recreated_topic_halts_the_table_until_an_offsets_reset(kafka, spawn_writer, tmp_path):
    topic = f"recreated-{time.time_ns()}"
    table = "offsets.recreated"
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           kafka={"topic.metadata.refresh.interval.ms": "1000"})
    produce(kafka.bootstrap, topic, records(0, 1000))
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)

    delete_topic(kafka.bootstrap, topic)
    time.sleep(4)
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    produce(kafka.bootstrap, topic, records(1000, 1300))
    invalid = writer.wait_for("table.offsets_invalid", timeout=120)
    assert "recreated" in invalid["reason"] and "offsets reset" in invalid["fix"], invalid
    time.sleep(3)
    assert iceberg.load_table(table).scan().count() == 1000  # nothing of the new topic taken silently

    shown = cli("offsets", "show", "--config", str(config), "--table", table)
    assert shown.returncode == 0 and "recreated" in shown.stdout, shown.stdout + shown.stderr
    dry = cli("offsets", "reset", "--config", str(config), "--table", table, "--to-earliest", "--dry-run")
    assert dry.returncode == 0 and "dry run" in dry.stdout, dry.stderr
    reset = cli("offsets", "reset", "--config", str(config), "--table", table, "--to-earliest")
    assert reset.returncode == 0, reset.stderr

    writer.wait_for("table.offsets_valid", timeout=60)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0, writer.log()
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(1300))
    history = [s.summary.additional_properties for s in iceberg.load_table(table).snapshots() if s.summary]
    assert any("tabletopic.offsets-reset" in summary for summary in history)


def test_status_reports_lag_freshness_and_files(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "offsets.status"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    produce(kafka.bootstrap, topic, records(0, 1000))
    writer = spawn_writer(config)
    wait_committed(catalog_of(config), table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0
    produce(kafka.bootstrap, topic, records(1000, 1200))  # not read yet: lag

    result = cli("status", "--config", str(config), "--output", "json")
    assert result.returncode == 0, result.stderr
    [status] = json.loads(result.stdout)
    assert status["table"] == table and status["exists"]
    assert status["lag"] == 200 and status["partitions_invalid"] == 0
    assert 0 <= status["last_commit_age_s"] < 120 and 0 <= status["newest_record_age_s"] < 120
    assert status["snapshots"] >= 1 and status["data_files"] >= 1 and status["small_files"] == status["data_files"]
    text = cli("status", "--config", str(config))
    assert text.returncode == 0 and table in text.stdout
