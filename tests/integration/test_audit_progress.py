"""The audit's reading of a topic reports its progress against a real broker: per partition, offsets read
of offsets to read, ending done; `tabletopic audit` off a terminal logs it as audit.progress lines."""

from __future__ import annotations

import json

from tabletopic.kafka.reader import read_offsets
from tests.support import audit_values_cli, catalog_of, json_n, log_end, produce, wait_committed, writer_config

PARTITIONS = 3


def test_reading_a_topics_offsets_reports_each_partition_to_its_end(kafka, new_topic) -> None:
    topic = new_topic(PARTITIONS)
    produce(kafka.bootstrap, topic, [(n % PARTITIONS, None, json_n(n), None) for n in range(300)])
    reports: list[tuple[str, int, int]] = []
    logs = read_offsets({"bootstrap.servers": kafka.bootstrap}, topic, upto={0: 40, 1: 100, 2: 0},
                        on_progress=lambda *step: reports.append(step))
    assert [len(logs[p].offsets) for p in range(PARTITIONS)] == [40, 100, 0]
    last: dict[str, int] = {}
    for part, done, total in reports:
        assert last.get(part, 0) <= done <= total, reports
        last[part] = done
    # Partition 2 has nothing to read below its offset: it is never a part.
    assert {part: (done, total) for part, done, total in reports} == {f"{topic}/0": (40, 40),
                                                                       f"{topic}/1": (100, 100)}


def test_the_audit_command_off_a_terminal_logs_audit_progress(kafka, new_topic, spawn_writer, tmp_path) -> None:
    topic = new_topic(2)
    table = "audit.progress"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    produce(kafka.bootstrap, topic, [(n % 2, None, json_n(n), None) for n in range(200)])
    writer = spawn_writer(config)
    wait_committed(catalog_of(config), table, "tests", log_end(kafka.bootstrap, topic, 2), writer=writer)
    assert writer.stop() == 0, writer.log()
    done = audit_values_cli(config, topic, table)  # the offset audit, then the value audit
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if '"audit.progress"' in line]
    finals = {line["audit"]: line for line in lines if line["final"]}
    assert set(finals) == {"offsets", "values"}, done.stderr
    for line in finals.values():
        assert (line["table"], line["offsets"], line["total"], line["eta_s"]) == (table, 200, 200, 0)
    assert "audit.progress" not in done.stdout  # the report stays clean
