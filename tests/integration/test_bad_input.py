"""Bad config exits 2 naming the key, before connecting; with `errors: fail` a bad record stops the
writer naming it, after every good record before it is committed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tabletopic.commit.committer import table_offsets
from tests.support import assert_values_equal, audit_values_cli, catalog_of, log_end, produce, writer_config


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("kafka: {bootstrap.servers: '127.0.0.1:1'}\ntables: [{table: a.b, topic: t, formt: json}]\n",
         "tables[0].formt"),
        ("kafka: {bootstrap.servers: '127.0.0.1:1'}\ncommit: {interval_seconds: often}\n"
         "tables: [{table: a.b, topic: t}]\n", "commit.interval_seconds"),
        ("kafka: {bootstrap.servers: '127.0.0.1:1'}\ntables: [{topic: t}]\n", "tables[0].table"),
    ],
)
def test_bad_config_exits_2_naming_the_key_before_connecting(tmp_path, yaml_text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    started = time.monotonic()
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert time.monotonic() - started < 20  # nothing waited on the unreachable broker at 127.0.0.1:1


def test_flags_only_form_needs_topic_and_table_together():
    result = run_cli("run", "--bootstrap-servers", "127.0.0.1:1", "--topic", "t")
    assert result.returncode == 2
    assert "--table" in result.stderr


def test_a_malformed_json_record_stops_the_writer_after_committing_every_good_record(
    kafka, new_topic, spawn_writer, tmp_path
):
    topic = new_topic(3)
    table = "bad.json_events"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           commit={"interval_seconds": 60}, table_settings={"errors": "fail"})
    good = [(p, None, b'{"n": %d}' % n, None) for n in range(300) for p in [n % 3]]
    produce(kafka.bootstrap, topic, good)
    bad_offset = log_end(kafka.bootstrap, topic, 3)[(topic, 1)]
    produce(kafka.bootstrap, topic, [(1, b"k", b'{"n": 9999, "oops"', None)])
    produce(kafka.bootstrap, topic, [(p, None, b'{"n": %d}' % n, None) for n in range(300, 360) for p in [n % 3]])
    ends = log_end(kafka.bootstrap, topic, 3)

    writer = spawn_writer(config)
    assert writer.wait_exit(timeout=120) == 1, writer.log()
    bad = writer.named("record.bad")
    assert len(bad) == 1, writer.log()
    assert (bad[0]["topic"], bad[0]["partition"], bad[0]["offset"]) == (topic, 1, bad_offset)
    assert "malformed JSON" in bad[0]["reason"]

    iceberg = catalog_of(config)
    committed = table_offsets(iceberg.load_table(table), "tests")
    assert committed[(topic, 1)] == bad_offset  # everything before the bad record, nothing after
    assert committed[(topic, 0)] == ends[(topic, 0)]  # other partitions ran to their end
    assert committed[(topic, 2)] == ends[(topic, 2)]
    assert_values_equal(audit_values_cli(config, topic, table))  # every committed row is its record

    # A restart stops at the same record again, committing nothing new: it never skips it.
    again = spawn_writer(config)
    assert again.wait_exit(timeout=120) == 1
    assert [(e["partition"], e["offset"]) for e in again.named("record.bad")] == [(1, bad_offset)]
