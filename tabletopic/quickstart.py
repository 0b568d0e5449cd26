"""`tabletopic quickstart`: the whole way on the embedded default, on one machine, told as a walkthrough.

Step 1. Start a local Kafka broker (jars fetched once into ~/.cache/tabletopic).
Step 2. Create topic `events` (4 partitions) and produce sample JSON events.
Step 3. Run the writer until the table holds every record, then stop it as SIGTERM would.
Step 4. Print rows from the table, the snapshot with its Kafka offsets, and the audit.
Step 5. Print the next commands (DuckDB, status, backfill) and, on a terminal, keep the broker up for them.

The terminal gets the walkthrough on stdout; everything written to stderr meanwhile (the writer's
structlog lines, librdkafka's own lines, warnings) goes to a log file in the warehouse, named on screen.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import yaml

from tabletopic import logs
from tabletopic.audit import audit, format_report
from tabletopic.catalog.loader import open_catalog
from tabletopic.commit.offsets import offsets_key
from tabletopic.config import load_config
from tabletopic.local.kafka import KAFKA_VERSION, LocalKafka, kafka_libs
from tabletopic.local.topics import create_topic, produce, sample_events
from tabletopic.service import Service

TOPIC = "events"
PARTITIONS = 4
TABLE = "demo.events"
GROUP = "quickstart"
COPY_TABLE = "demo.events_copy"
# The writer normally commits every 30 s; the demo wants to show rows within seconds.
DEMO_COMMIT_INTERVAL_S = 2.0
WAIT_LIMIT_S = 300.0
ROWS_SHOWN = 5
SHOWN_FIELDS = ("event_id", "user_id", "page", "amount", "device", "_kafka_partition", "_kafka_offset")
LOG_NAME = "quickstart.log"
CONFIG_NAME = "quickstart.yaml"
STEPS = 5


def quickstart(records: int, warehouse: str) -> int:
    folder = Path(warehouse).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    print("tabletopic quickstart: a Kafka topic into an Iceberg table, exactly once, on this machine.")
    _step(1, "Kafka broker")
    with tempfile.TemporaryDirectory(prefix="tabletopic-kafka-") as workdir, _stderr_to(folder / LOG_NAME):
        if not kafka_libs().exists():
            _say(f"fetching its jars from Maven Central, once (about 43 MB): {kafka_libs()}")
        _say(f"starting a single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) ...")
        kafka = LocalKafka(Path(workdir)).start()
        try:
            _say(f"started: bootstrap servers {kafka.bootstrap}")
            return _walkthrough(kafka, records, folder)
        finally:
            kafka.stop()


def _walkthrough(kafka: LocalKafka, records: int, folder: Path) -> int:
    _step(2, "Sample events")
    create_topic(kafka.bootstrap, TOPIC, PARTITIONS)
    produced = produce(kafka.bootstrap, TOPIC, sample_events(records))
    _say(f"created topic {TOPIC!r} ({PARTITIONS} partitions) and wrote {produced} JSON events to it")
    _say("each: event_id, user_id (also the key), page, amount, at, device {os, version}, tags [...]")

    _step(3, "Writer")
    settings = _settings(kafka.bootstrap, folder)
    config_path = folder / CONFIG_NAME
    config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
    config = load_config(config_path)
    _say(f"tabletopic run --config {config_path}  (in this process; its log: {folder / LOG_NAME})")
    _say(f"group {GROUP!r} reads topic {TOPIC!r} into table {TABLE}, a commit every {DEMO_COMMIT_INTERVAL_S:g} s")
    catalog = open_catalog(config.catalog)
    if not _write_until(Service(config), catalog, produced):
        _say(f"the writer stopped with an error: see {folder / LOG_NAME}")
        return 1

    _step(4, f"Table {TABLE}")
    table = catalog.load_table(TABLE)
    _say(f"catalog: SQLite at {folder / 'catalog.db'}; data and metadata files under {folder}")
    _say(f"metadata: {table.metadata_location}")
    rows = table.scan(limit=ROWS_SHOWN, selected_fields=SHOWN_FIELDS).to_arrow().to_pylist()
    _say(f"{table.scan().count()} rows; the first {len(rows)}:")
    for line in format_rows(rows):
        _say("  " + line)
    snapshot = table.current_snapshot()
    if snapshot is not None and snapshot.summary is not None:
        _say(f"snapshot {snapshot.snapshot_id} holds the Kafka offsets it wrote up to, in the same commit:")
        _say(f"  {offsets_key(GROUP)} = {snapshot.summary.get(offsets_key(GROUP))}")

    _step(5, "Audit: every offset of the topic against the table")
    reports = audit(catalog, TABLE, TOPIC, config.group_id, config.kafka)
    for line in format_report(reports):
        _say(line)
    held = table.scan().count()
    ok = all(r.ok for r in reports) and held == produced
    verdict = "OK" if ok else "FAILED"
    print(f"\naudit: {verdict}: {held} rows for {produced} records, each offset exactly once"
          if ok else f"\naudit: {verdict}: {held} rows for {produced} records; see the table above", flush=True)
    print()
    for line in next_commands(config_path, table.metadata_location):
        print(line)
    _keep_broker_up(kafka)
    return 0 if ok else 1


def _settings(bootstrap: str, folder: Path) -> dict[str, Any]:
    """The config the quickstart runs with, as it is written to quickstart.yaml for the next commands."""
    return {
        "kafka": {"bootstrap.servers": bootstrap},
        "group_id": GROUP,
        "catalog": {"warehouse": str(folder)},
        "commit": {"interval_seconds": DEMO_COMMIT_INTERVAL_S},
        "tables": [{"table": TABLE, "topic": TOPIC, "partition_by": ["day(_kafka_timestamp)"]}],
    }


def _write_until(service: Service, catalog: Any, produced: int) -> bool:
    """Run the writer until the table holds `produced` rows; True when it then stopped cleanly."""
    exit_codes: list[int] = []
    runner = threading.Thread(target=lambda: exit_codes.append(service.run()), name="writer")
    runner.start()
    try:
        deadline = time.monotonic() + WAIT_LIMIT_S
        shown = -1
        while time.monotonic() < deadline and runner.is_alive():
            time.sleep(1)
            held = catalog.load_table(TABLE).scan().count() if catalog.table_exists(TABLE) else 0
            if held != shown:
                _say(f"{TABLE}: {held} of {produced} rows")
                shown = held
            if held >= produced:
                break
    finally:
        service.stop()
        runner.join()
    return exit_codes == [0]


def next_commands(config_path: Path, metadata_location: str) -> list[str]:
    """The three commands to try next, with the paths and flags that work for this quickstart."""
    python, tabletopic = _python_command(), _tabletopic_command()
    metadata = metadata_location.removeprefix("file://")
    sql = (f"SELECT page, count(*) AS events, round(sum(amount), 2) AS amount FROM iceberg_scan('{metadata}') "
           "GROUP BY page ORDER BY events DESC")
    config = shlex.quote(str(config_path))
    return [
        "Next, try:",
        f"  1. Query the table with DuckDB ({python} -m pip install duckdb):",
        f"       {python} -c \"import duckdb; duckdb.sql(\\\"{sql}\\\").show()\"",
        "  2. Lag, freshness and snapshots of the table (needs the broker):",
        f"       {tabletopic} status --config {config}",
        f"  3. Read the topic again into a new table {COPY_TABLE}, exactly once and resumable (needs the broker):",
        f"       {tabletopic} backfill --config {config} --topic {TOPIC} --table {TABLE} --into {COPY_TABLE} "
        "--from-offset 0",
    ]


def _keep_broker_up(kafka: LocalKafka) -> None:
    if not sys.stdin.isatty():
        print(f"\nThe broker at {kafka.bootstrap} stops now (not a terminal): run the quickstart in a terminal "
              "to keep it up for commands 2 and 3.", flush=True)
        return
    print(f"\nThe broker at {kafka.bootstrap} stays up for commands 2 and 3: press Enter here to stop it.",
          flush=True)
    with suppress(KeyboardInterrupt):
        sys.stdin.readline()
    print("stopping the broker.", flush=True)


def _python_command() -> str:
    named_python = Path(sys.executable).with_name("python")
    return _shown(named_python if named_python.exists() else Path(sys.executable))


def _tabletopic_command() -> str:
    """`tabletopic` when that is what the shell finds, else the path of this virtualenv's script."""
    script = Path(sys.executable).with_name("tabletopic")
    on_path = shutil.which("tabletopic")
    if not script.exists() or (on_path is not None and Path(on_path).resolve() == script.resolve()):
        return "tabletopic"
    return _shown(script)


def _shown(path: Path) -> str:
    """A path as short as it can be shown: relative to the working directory when it lies under it."""
    # Not resolved: a virtualenv's bin/python is a symlink to the base interpreter, which has no packages.
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


@contextmanager
def _stderr_to(log_path: Path) -> Iterator[None]:
    """File descriptor 2 into `log_path` for the duration: the structlog lines, and whatever librdkafka's
    threads write to stderr themselves (`%4|...|GETPID|...` from a client with no logger), stay off the
    walkthrough. Restored before an error propagates, so a traceback still reaches the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    with log_path.open("ab") as log_file:
        os.dup2(log_file.fileno(), 2)
        try:
            logs.configure("info", json_output=True)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            logs.configure("warning")


def _step(number: int, title: str) -> None:
    print(f"\n[{number}/{STEPS}] {title}", flush=True)


def _say(line: str) -> None:
    print(f"      {line}", flush=True)


def format_rows(rows: list[dict[str, object]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    names = list(rows[0])
    cells = [[str(row[name]) for name in names] for row in rows]
    widths = [max(len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(names)]
    lines = ["  ".join(name.ljust(w) for name, w in zip(names, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return lines
