"""`tabletopic quickstart`: the whole way on the embedded default, on one machine.

Step 1. Start a local Kafka broker (jars fetched once into ~/.cache/tabletopic).
Step 2. Create topic `events` (4 partitions) and produce sample JSON events.
Step 3. Run the writer until the table holds every record, then stop it as SIGTERM would.
Step 4. Print rows from the table and the audit.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from tabletopic.audit import audit, format_report
from tabletopic.catalog.loader import open_catalog
from tabletopic.config import load_config
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.topics import create_topic, produce, sample_events
from tabletopic.service import Service

TOPIC = "events"
TABLE = "demo.events"
# The writer normally commits every 30 s; the demo wants to show rows within seconds.
DEMO_COMMIT_INTERVAL_S = 2.0
WAIT_LIMIT_S = 300.0


def quickstart(records: int, warehouse: str) -> int:
    # Step 1.
    print("starting a local Kafka broker ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="tabletopic-kafka-") as workdir:
        return _quickstart(LocalKafka(Path(workdir)).start(), records, warehouse)


def _quickstart(kafka: LocalKafka, records: int, warehouse: str) -> int:
    try:
        # Step 2.
        create_topic(kafka.bootstrap, TOPIC, 4)
        produced = produce(kafka.bootstrap, TOPIC, sample_events(records))
        print(f"produced {produced} events to {TOPIC} on {kafka.bootstrap}", flush=True)
        # Step 3.
        config = load_config(flags={
            "kafka": {"bootstrap.servers": kafka.bootstrap},
            "group_id": "quickstart",
            "catalog": {"warehouse": warehouse},
            "commit": {"interval_seconds": DEMO_COMMIT_INTERVAL_S},
            "tables": [{"table": TABLE, "topic": TOPIC, "partition_by": ["day(_kafka_timestamp)"]}],
        })
        service = Service(config)
        exit_codes: list[int] = []
        runner = threading.Thread(target=lambda: exit_codes.append(service.run()), name="writer")
        runner.start()
        catalog = open_catalog(config.catalog)
        deadline = time.monotonic() + WAIT_LIMIT_S
        while time.monotonic() < deadline and runner.is_alive():
            time.sleep(1)
            if catalog.table_exists(TABLE):
                held = catalog.load_table(TABLE).scan().count()
                print(f"table {TABLE}: {held} rows", flush=True)
                if held >= produced:
                    break
        service.stop()
        runner.join()
        if exit_codes != [0]:
            print(f"the writer stopped with an error (exit code {exit_codes}); see its log above")
            return 1
        # Step 4.
        table = catalog.load_table(TABLE)
        rows = table.scan(limit=5, selected_fields=("event_id", "user_id", "page", "amount", "device",
                                                     "_kafka_partition", "_kafka_offset")).to_arrow()
        print(f"\nfirst rows of {TABLE}:")
        for line in _format_rows(rows.to_pylist()):
            print(line)
        print()
        reports = audit(catalog, TABLE, TOPIC, config.group_id, config.kafka)
        for line in format_report(reports):
            print(line)
        ok = all(r.ok for r in reports) and table.scan().count() == produced
        print(f"audit: {'OK' if ok else 'FAILED'}; warehouse at {Path(warehouse).resolve()}")
        return 0 if ok else 1
    finally:
        kafka.stop()


def _format_rows(rows: list[dict[str, object]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    names = list(rows[0])
    cells = [[str(row[name]) for name in names] for row in rows]
    widths = [max(len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(names)]
    lines = ["  ".join(name.ljust(w) for name, w in zip(names, widths, strict=True))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    return lines
