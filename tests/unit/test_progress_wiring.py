"""Long command-line work reports its progress: compaction, dead-letter replay and the audits call their
`on_progress` as they go, and the commands turn it into `*.progress` lines (no terminal under pytest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic import audit_keys, audit_values, replay
from tabletopic.catalog.loader import open_catalog
from tabletopic.compaction.rewrite import compact
from tabletopic.config import TableConfig, load_config
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.sink import TableSink

Report = tuple[str, int, int]


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def records(partition: int, first: int, values: list[bytes], topic: str = "topic") -> RecordChunk:
    n = len(values)
    return RecordChunk(topic, partition, list(range(first, first + n)), [b"k"] * n, values, [1767225600000] * n,
                       [None] * n)


def commit_small_files(catalog: Catalog, commits: int, partition_by: tuple[str, ...] = ()) -> None:
    """One small data file per commit (per partition value); JSON records {"n": …, "k": "a"|"b"}."""
    sink = TableSink(TableConfig(table="ns.t", topic="topic", partition_by=list(partition_by)), catalog, "g", "w",
                     RetryPolicy())
    for c in range(commits):
        sink.ingest(records(0, c * 10, [b'{"n": %d, "k": "%s"}' % (n, b"ab"[n % 2:n % 2 + 1])
                                        for n in range(c * 10, c * 10 + 10)]), now=0.0)
        sink.flush()


def rising(reports: list[Report]) -> bool:
    """Each part's count never goes back, and never passes its total."""
    last: dict[str, int] = {}
    for part, done, total in reports:
        if done < last.get(part, 0) or done > total:
            return False
        last[part] = done
    return True


# --- compaction ----------------------------------------------------------------------------------


def test_compaction_reports_files_rewritten_of_files_planned(catalog: SqlCatalog) -> None:
    commit_small_files(catalog, 6, partition_by=("k",))  # 12 files: 2 groups of 6
    reports: list[Report] = []
    result = compact(catalog, "ns.t", 64 << 20, on_progress=lambda *report: reports.append(report))
    assert result.files_removed == 12
    assert reports == [("ns.t", 0, 12), ("ns.t", 6, 12), ("ns.t", 12, 12)]


def test_a_compaction_with_nothing_to_do_reports_nothing(catalog: SqlCatalog) -> None:
    commit_small_files(catalog, 1)
    reports: list[Report] = []
    assert compact(catalog, "ns.t", 64 << 20, on_progress=lambda *report: reports.append(report)).groups == 0
    assert reports == []


def logged_by(argv: list[str]) -> list[dict[str, Any]]:
    """The JSON log lines of `tabletopic ARGV` run as a command (its stderr is no terminal: plain lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLETOPIC_")}
    done = subprocess.run([sys.executable, "-m", "tabletopic", *argv], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("command", [["compact"], ["maintain"]])
def test_compact_and_maintain_log_compact_progress(command: list[str], tmp_path: Path) -> None:
    warehouse = str(tmp_path / "wh")
    commit_small_files(open_catalog(load_config(None, {"catalog": {"warehouse": warehouse}}, {},
                                                needs=frozenset()).catalog), 4)
    logged = logged_by([*command, "--warehouse", warehouse, "--table", "ns.t"])
    shown = [line for line in logged if line["event"] == "compact.progress"]
    assert shown and shown[-1]["final"] is True
    assert (shown[-1]["table"], shown[-1]["files"], shown[-1]["total"]) == ("ns.t", 4, 4)


# --- dead-letter replay --------------------------------------------------------------------------


def dead_letters(catalog: Catalog, count: int) -> TableConfig:
    """`count` dead letters of ns.t (an unknown field under json_drift strict), then the config that fixes them."""
    strict = TableConfig(table="ns.t", topic="topic", json_drift="strict")
    writer = TableSink(strict, catalog, "g", "w", RetryPolicy())
    writer.ingest(records(0, 0, [b'{"a": 1}']), now=0.0)
    writer.ingest(records(0, 1, [b'{"a": %d, "b": "new"}' % n for n in range(count)]), now=0.0)
    writer.flush()
    return TableConfig(table="ns.t", topic="topic", json_drift="evolve")


def test_replay_reports_dead_letters_decoded_in_steps(catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = dead_letters(catalog, 5)
    monkeypatch.setattr(replay, "DECODE_AT_ONCE", 2)
    reports: list[Report] = []
    report = replay.replay(catalog, fixed, "g", None, on_progress=lambda *step: reports.append(step))
    assert (report.chosen, report.replayed, report.appended) == (5, 5, 5)
    assert reports == [(dlq_identifier("ns.t"), n, 5) for n in (2, 4, 5)]
    assert sorted(catalog.load_table("ns.t").scan(selected_fields=("_kafka_offset",)).to_arrow()
                  ["_kafka_offset"].to_pylist()) == list(range(6))  # each letter once, as one chunk would


def test_dlq_replay_logs_replay_progress(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh"
    config = tmp_path / "tabletopic.yaml"
    config.write_text(f"catalog:\n  warehouse: {warehouse}\n"
                      "tables:\n  - table: ns.t\n    topic: topic\n    json_drift: evolve\n")
    dead_letters(open_catalog(load_config(str(config), {}, {}, needs=frozenset()).catalog), 3)
    logged = logged_by(["dlq", "replay", "--config", str(config), "--table", "ns.t"])
    shown = [line for line in logged if line["event"] == "replay.progress"]
    assert shown and shown[-1]["final"] is True
    assert (shown[-1]["table"], shown[-1]["records"], shown[-1]["total"]) == ("ns.t", 3, 3)


# --- audits --------------------------------------------------------------------------------------


def fake_topic(chunks: dict[int, list[RecordChunk]]) -> Any:
    """read_partition over records held here: each partition's chunks inside [start, end)."""
    def read_partition(settings: Any, topic: str, partition: int, start: int, end: int) -> Iterator[RecordChunk]:
        for chunk in chunks.get(partition, []):
            inside = [i for i, offset in enumerate(chunk.offsets) if start <= offset < end]
            if inside:
                yield chunk.select(inside)
    return read_partition


def test_the_value_audit_reports_each_partition_to_its_end(catalog: SqlCatalog,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    topic = {0: [records(0, 0, [b'{"a": 1}'] * 3), records(0, 3, [b'{"a": 2}'] * 3)],
             1: [records(1, 0, [b'{"a": 3}'] * 2)]}
    sink = TableSink(TableConfig(table="ns.t", topic="topic"), catalog, "g", "w", RetryPolicy())
    for chunks in topic.values():
        for chunk in chunks:
            sink.ingest(chunk, now=0.0)
    sink.flush()
    monkeypatch.setattr(audit_values, "read_partition", fake_topic(topic))
    reports: list[Report] = []
    # Partition 1's range ends past its last record (a transaction marker): it still ends done.
    report = audit_values.audit_values(catalog, "ns.t", "topic", {}, "json", {0: (0, 6), 1: (0, 3)},
                                       on_progress=lambda *step: reports.append(step))
    assert report.ok and report.records == 8
    assert reports[:2] == [("topic/0", 0, 6), ("topic/1", 0, 3)]  # every part's total known first
    assert rising(reports)
    assert {part: (done, total) for part, done, total in reports} == {"topic/0": (6, 6), "topic/1": (3, 3)}
    assert ("topic/0", 3, 6) in reports


def test_the_key_audit_reports_each_partition_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    topic = {0: [records(0, 5, [b"x"] * 2), records(0, 7, [b"y"] * 2)], 2: [records(2, 0, [b"z"])]}
    monkeypatch.setattr(audit_keys, "read_partition", fake_topic(topic))
    reports: list[Report] = []
    read = list(audit_keys._read_ranges({}, "topic", {0: (5, 10), 2: (0, 1)}, lambda *step: reports.append(step)))
    assert [len(chunk) for chunk in read] == [2, 2, 1]
    assert reports[:2] == [("topic/0", 0, 5), ("topic/2", 0, 1)]
    assert rising(reports)
    assert {part: (done, total) for part, done, total in reports} == {"topic/0": (5, 5), "topic/2": (1, 1)}
    assert list(audit_keys._read_ranges({}, "topic", {0: (5, 10)}, None)) == read[:2]  # no callback: the same
