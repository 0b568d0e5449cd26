"""Apache Iceberg's Kafka Connect sink, run in Connect standalone mode as tabletopic's peer in benchmarks.

Step 1 (`fetch`) resolves, once, the Connect worker (tabletopic/local/connect.py: `libs/`) and
`plugins/iceberg/`, the connector (`iceberg-kafka-connect`, plus what Iceberg's own runtime zip adds:
`iceberg-parquet`, `iceberg-aws` with the AWS bundle for S3FileIO, and Hadoop's shaded client, which
Parquet needs), from Maven Central with `mvn dependency:copy-dependencies`. The connector lives on
`plugin.path`, isolated from the worker, as it would in a real deployment.
Step 2 (`ConnectSink.start`) runs the worker (`LocalConnect`) with the sink's connector properties,
optionally pinned with `taskset -c`.

    .venv/bin/python -m bench.peer.connect --records 100000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.schema import Schema as IcebergSchema
from pyiceberg.types import (
    DoubleType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

from tabletopic.local.connect import LocalConnect, copy_dependencies, fetch_worker
from tabletopic.local.jvm import cache_root
from tabletopic.local.kafka import KAFKA_VERSION, LocalKafka
from tabletopic.local.ports import free_port
from tabletopic.local.rest_catalog import ICEBERG_VERSION, LocalRestCatalog
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from tabletopic.local.topics import create_topic, produce

HADOOP_VERSION = "3.4.1"

CONNECTOR = [
    ("org.apache.iceberg", "iceberg-kafka-connect", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-kafka-connect-events", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-parquet", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-aws", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-aws-bundle", ICEBERG_VERSION),
    ("org.apache.hadoop", "hadoop-client-api", HADOOP_VERSION),
    ("org.apache.hadoop", "hadoop-client-runtime", HADOOP_VERSION),
]


def home() -> Path:
    return cache_root() / f"kafka-connect-{KAFKA_VERSION}-iceberg-{ICEBERG_VERSION}"


def fetch() -> Path:
    """The `plugin.path` folder holding `iceberg/` (the connector), after fetching the worker too; no-ops when there."""
    fetch_worker()
    plugins = home() / "plugins"
    if (plugins / "iceberg").is_dir():
        return plugins
    staging = plugins.with_name(plugins.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory() as work:
        copy_dependencies("iceberg-sink", CONNECTOR, staging / "iceberg", Path(work))
    staging.rename(plugins)
    return plugins


START_TIMEOUT_S = 180.0


@dataclass
class ConnectSink:
    """One Connect standalone worker running the Iceberg sink from `topic` into `table` (ns.name).

    The control topic, connector name, consumer groups and transactional ids all carry `run_id`,
    so runs on one broker never share state.
    """

    workdir: Path
    bootstrap: str
    topic: str
    table: str
    catalog_uri: str
    s3_endpoint: str
    access_key: str
    secret_key: str
    region: str
    commit_interval_s: float = 10.0
    cpus: str | None = None  # e.g. "0,1": run under `taskset -c`
    auto_create: bool = False  # False: the table must exist (the bench pre-creates it)
    tasks: int = 1
    max_heap: str = "2g"  # connect-standalone.sh's default
    offset_flush_interval_ms: int = 1000
    log_level: str = "WARN"  # of everything but the sink's own loggers (INFO), in workdir/connect.log
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    port: int = field(default_factory=free_port)
    worker: LocalConnect | None = None
    _cpu_s: float = 0.0
    _peak_rss: int = 0

    @property
    def name(self) -> str:
        return f"iceberg-sink-{self.run_id}"

    @property
    def control_topic(self) -> str:
        return f"control-iceberg-{self.run_id}"

    @property
    def group_id(self) -> str:
        """The sink's consumer group: Connect names it after the connector."""
        return f"connect-{self.name}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.worker.process if self.worker is not None else None

    def worker_properties(self) -> dict[str, str]:
        """What the sink adds to LocalConnect's worker properties."""
        return {
            # An idle sink task blocks in poll() until the next offset flush (default 60 s), and the
            # Iceberg sink reads its control topic only from put(): left at the default, a drained
            # topic answers a commit request only after one or two flush intervals.
            "offset.flush.interval.ms": str(self.offset_flush_interval_ms),
        }

    def connector_properties(self) -> dict[str, str]:
        return {
            "name": self.name,
            "connector.class": "org.apache.iceberg.connect.IcebergSinkConnector",
            "tasks.max": str(self.tasks),
            "topics": self.topic,
            "key.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
            "iceberg.tables": self.table,
            "iceberg.tables.auto-create-enabled": str(self.auto_create).lower(),
            "iceberg.control.topic": self.control_topic,
            "iceberg.control.group-id-prefix": f"cg-control-{self.run_id}-",
            "iceberg.control.commit.interval-ms": str(int(self.commit_interval_s * 1000)),
            # Else the control-topic clients find bootstrap.servers by parsing the JVM's command line.
            "iceberg.kafka.bootstrap.servers": self.bootstrap,
            "iceberg.catalog.type": "rest",
            "iceberg.catalog.uri": self.catalog_uri,
            "iceberg.catalog.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
            "iceberg.catalog.s3.endpoint": self.s3_endpoint,
            "iceberg.catalog.s3.path-style-access": "true",
            "iceberg.catalog.s3.access-key-id": self.access_key,
            "iceberg.catalog.s3.secret-access-key": self.secret_key,
            "iceberg.catalog.client.region": self.region,
        }

    def start(self) -> ConnectSink:
        """Start the worker and return once the sink task is RUNNING."""
        plugins = fetch()
        # The broker may not auto-create topics; the control topic is one partition, like the docs make it.
        create_topic(self.bootstrap, self.control_topic, 1)
        self.worker = LocalConnect(
            self.workdir, self.bootstrap, plugins, connectors={self.name: self.connector_properties()},
            max_heap=self.max_heap, cpus=self.cpus, log_level=self.log_level,
            loggers={"org.apache.iceberg.connect": "INFO"}, extra_properties=self.worker_properties(), port=self.port,
        )
        self.worker.start(START_TIMEOUT_S)
        return self

    def check(self) -> None:
        """RuntimeError if the worker has exited or a sink task has failed."""
        if self.worker is None:
            raise RuntimeError("the Connect worker is not started")
        self.worker.check()
        self.worker.task_running(self.name, self.tasks)

    def stop(self) -> None:
        self._sample()
        if self.worker is not None:
            self.worker.stop()

    def cpu_seconds(self) -> float:
        """User + system CPU of the worker's process tree so far (the last reading once it stopped)."""
        self._sample()
        return self._cpu_s

    def peak_rss_bytes(self) -> int:
        """The sum of the peak resident set (VmHWM) of the worker's processes."""
        self._sample()
        return self._peak_rss

    def _sample(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        cpu, peak = 0.0, 0
        for pid in _process_tree(process.pid):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # it exited between the listing and now
                continue
            utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
            cpu += (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
            peak += next((int(line.split()[1]) * 1024 for line in status.splitlines()
                          if line.startswith("VmHWM:")), 0)
        self._cpu_s, self._peak_rss = cpu, max(self._peak_rss, peak)


def _process_tree(pid: int) -> list[int]:
    pids = [pid]
    for parent in pids:  # grows as it goes: a breadth-first walk
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids.extend(int(child) for child in children.read_text().split())
    return pids


def wait_committed(catalog: Catalog, table: str, expected_rows: int, timeout: float,
                   sink: ConnectSink | None = None) -> float:
    """Seconds until `table`'s current snapshot holds `expected_rows` (its `total-records`).

    TimeoutError after `timeout`; with `sink`, RuntimeError as soon as its worker dies or its task fails.
    """
    started = time.monotonic()
    rows = 0
    while time.monotonic() - started < timeout:
        if sink is not None:
            sink.check()
        with contextlib.suppress(NoSuchTableError):
            snapshot = catalog.load_table(table).current_snapshot()
            rows = int(snapshot.summary["total-records"] or 0) if snapshot and snapshot.summary else 0
            if rows >= expected_rows:
                return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"{table} holds {rows} of {expected_rows} rows after {timeout:.0f}s")


def events(count: int, seed: int = 11) -> Iterator[tuple[bytes, bytes]]:
    """(key, JSON value) pairs of ~350 bytes: strings, numbers, an ISO timestamp, a nested struct, a list."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pages = ["/", "/search", "/cart", "/checkout", "/product/4711", "/account/orders"]
    agents = ["Firefox/128.0 (X11; Linux x86_64)", "Safari/17.5 (iPhone; iOS 17_5)"]
    for i in range(count):
        user = f"user-{rng.randrange(100_000):06d}"
        event = {
            "event_id": i,
            "user_id": user,
            "session_id": f"{rng.getrandbits(128):032x}",
            "page": rng.choice(pages),
            "referrer": f"https://example.com/c/{rng.randrange(500)}?utm_source=mail",
            "amount": round(rng.uniform(0, 500), 2),
            "quantity": rng.randrange(1, 10),
            # "Z", not "+00:00": the sink's parser takes an offset with a colon only after whole seconds.
            "at": (start + timedelta(milliseconds=i * 37)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "device": {"os": rng.choice(["ios", "android", "linux"]), "version": rng.randrange(1, 20),
                       "model": rng.choice(["Pixel 8", "iPhone 15", "ThinkPad X1"])},
            "tags": rng.sample(["new", "promo", "mobile", "returning"], k=rng.randrange(0, 3)),
            "user_agent": rng.choice(agents),
        }
        yield user.encode(), json.dumps(event, separators=(",", ":")).encode()


def events_schema() -> IcebergSchema:
    """The table `events` fill, as a user would create it: every field optional, `at` a timestamptz."""
    fields = iter(range(1, 100))
    device = StructType(*(NestedField(next(fields), name, kind, required=False) for name, kind in
                          [("os", StringType()), ("version", LongType()), ("model", StringType())]))
    tags = ListType(next(fields), StringType(), element_required=False)
    columns = [
        ("event_id", LongType()), ("user_id", StringType()), ("session_id", StringType()), ("page", StringType()),
        ("referrer", StringType()), ("amount", DoubleType()), ("quantity", LongType()), ("at", TimestamptzType()),
        ("device", device), ("tags", tags), ("user_agent", StringType()),
    ]
    return IcebergSchema(*(NestedField(next(fields), name, kind, required=False) for name, kind in columns))


def smoke(work: Path, records: int, partitions: int, commit_interval_s: float, cpus: str | None) -> None:
    """Produce `records` events, then time the sink from its start until the table holds them all."""
    kafka = LocalKafka(work / "kafka").start()
    s3 = LocalS3(work / "s3").start()
    rest = LocalRestCatalog(work / "rest", s3).start()
    sink: ConnectSink | None = None
    try:
        topic, table = "events", "bench.events"
        create_topic(kafka.bootstrap, topic, partitions)
        produce(kafka.bootstrap, topic, events(records))
        catalog = load_catalog("lake", **rest.client_properties())
        catalog.create_namespace("bench")
        catalog.create_table(table, events_schema())
        sink = ConnectSink(
            work / "connect", kafka.bootstrap, topic, table, rest.uri, s3.endpoint, ACCESS_KEY, SECRET_KEY, REGION,
            commit_interval_s=commit_interval_s, cpus=cpus, tasks=partitions,
        )
        started = time.monotonic()
        sink.start()
        ready_s = time.monotonic() - started
        wait_committed(catalog, table, records, timeout=600, sink=sink)
        total_s = time.monotonic() - started
        cpu, rss = sink.cpu_seconds(), sink.peak_rss_bytes()
        snapshots = len(catalog.load_table(table).snapshots())
        print(f"records: {records}  startup (task RUNNING): {ready_s:.1f}s  start to committed: {total_s:.1f}s  "
              f"snapshots: {snapshots}")
        print(f"records/s from start: {records / total_s:,.0f}  "
              f"from task RUNNING: {records / (total_s - ready_s):,.0f}")
        print(f"CPU seconds: {cpu:.1f}  peak RSS: {rss / 2**20:.0f} MiB")
    finally:
        if sink is not None:
            sink.stop()
        rest.stop()
        s3.stop()
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Time Iceberg's Kafka Connect sink on a local broker and lake.")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=1, help="topic partitions, and sink tasks")
    parser.add_argument("--commit-interval", type=float, default=10.0, help="seconds")
    parser.add_argument("--cpus", default=None, help="a taskset -c list for the worker, e.g. 0,1")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs) and print it")
    args = parser.parse_args()
    started = time.monotonic()
    fetch()
    print(f"fetch: {time.monotonic() - started:.1f}s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    try:
        smoke(work, args.records, args.partitions, args.commit_interval, args.cpus)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
