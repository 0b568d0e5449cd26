"""The benchmark's peer (bench/peer/connect.py): Iceberg's Kafka Connect sink fills a table, every record once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog import load_catalog

from bench.peer.connect import ConnectSink, events, events_schema, wait_committed
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tabletopic.local.topics import produce

RECORDS = 5_000


def test_connect_sink_commits_every_record_once(kafka, s3, rest_catalog, new_topic, tmp_path):
    topic = new_topic(2, prefix="peer")
    produce(kafka.bootstrap, topic, events(RECORDS))
    catalog = load_catalog("peer", **rest_catalog.client_properties())
    catalog.create_namespace_if_not_exists("peer")
    table = f"peer.events_{uuid.uuid4().hex[:8]}"
    catalog.create_table(table, events_schema())

    sink = ConnectSink(
        tmp_path, kafka.bootstrap, topic, table, rest_catalog.uri, s3.endpoint, ACCESS_KEY, SECRET_KEY, REGION,
        commit_interval_s=2, tasks=2, cpus="0",
    ).start()
    try:
        assert sink.process is not None
        status = Path(f"/proc/{sink.process.pid}/status").read_text()
        assert "Cpus_allowed_list:\t0\n" in status  # pinned by taskset
        wait_committed(catalog, table, RECORDS, timeout=120, sink=sink)
        assert sink.cpu_seconds() > 0
        assert sink.peak_rss_bytes() > 64 * 2**20
    finally:
        sink.stop()

    rows = catalog.load_table(table).scan().to_arrow().sort_by("event_id")
    assert rows["event_id"].to_pylist() == list(range(RECORDS))
    assert rows.schema.field("at").type == pa.timestamp("us", tz="UTC")
    first = json.loads(next(events(1))[1])
    got = rows.slice(0, 1).to_pylist()[0]
    assert got["at"].isoformat(timespec="milliseconds") == first["at"].replace("Z", "+00:00")
    assert (got["device"], got["tags"], got["amount"]) == (first["device"], first["tags"], first["amount"])
