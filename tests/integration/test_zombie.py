"""A writer frozen past its session timeout wakes up after another took its partitions: it commits nothing
overlapping, and the table stays exact."""

from __future__ import annotations

import signal
import time

from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 4
RECORDS = 20_000


def records(start: int, count: int):
    return ((None, None, b'{"n": %d}' % n, None) for n in range(start, start + count))


def test_a_zombie_commits_nothing_overlapping(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "zombie.events"
    # The zombie buffers for a long time; the healthy writer commits every second.
    zombie_config = writer_config(tmp_path / "z.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                                  commit={"interval_seconds": 12})
    healthy_config = writer_config(tmp_path / "h.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse")
    iceberg = catalog_of(healthy_config)
    produce(kafka.bootstrap, topic, records(0, RECORDS))

    zombie = spawn_writer(zombie_config)
    zombie.wait_for("service.started")
    zombie.wait_for("table.created")  # it has decoded and buffered the first batch
    time.sleep(2)
    zombie.process.send_signal(signal.SIGSTOP)

    healthy = spawn_writer(healthy_config)
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(iceberg, table, "tests", ends, timeout=120, writer=healthy)

    # Wake the zombie with its stale buffer past its commit interval; feed more records meanwhile.
    zombie.process.send_signal(signal.SIGCONT)
    produce(kafka.bootstrap, topic, records(RECORDS, 5000))
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(iceberg, table, "tests", ends, timeout=120, writer=healthy)
    time.sleep(3)  # let the zombie finish whatever it attempts
    assert zombie.stop() == 0
    assert healthy.stop() == 0

    # The zombie either learnt it lost its partitions or was fenced at commit time; it never appended its stale rows.
    assert zombie.named("kafka.lost") or zombie.named("commit.dropped_overlap") or zombie.named("kafka.revoked"), \
        zombie.log()
    loaded = iceberg.load_table(table)
    n = loaded.scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(n) == list(range(RECORDS + 5000))
    audit = audit_cli(healthy_config, topic, table)
    assert audit.returncode == 0, audit.stdout
