"""Object-store requests per writer commit, per maintenance action and per idle minute, counted by the server.

pyiceberg writes through its own FileIO (pyarrow's S3 client) and the REST catalog through Iceberg's Java
S3FileIO, so no client-side hook sees every request. This bench serves moto's S3 app behind a counting WSGI
layer (its own process, `--serve PORT`): each request is counted by client (from its User-Agent: tabletopic's
pyarrow FileIO, the catalog's Java SDK, boto3 for the bench's own set-up), operation (GET, HEAD, LIST, PUT,
multipart steps, DELETE) and object kind (metadata.json, manifest list, manifest, data file).

On a local broker and the Iceberg REST catalog over that S3:
1. a `tabletopic run` (one worker, maintenance off, commit interval `--interval`) is fed `--rate` records/s
   for `--seconds`; the counts are read at each `commit.done`, and requests per commit are the difference
   over the last `--window` commits (start-up and the table's creation left out);
2. then, fed nothing, the writer's requests over `--idle-seconds`;
3. then, in this process, each maintenance action once, on the table the writer left: the scheduler's check
   (nothing due), manifest merge, compaction, expiry (keeping `--keep` snapshots) and orphan removal;
4. and one `--upload-mib` file written through pyiceberg's FileIO (how a large data file is uploaded).

`--metadata-sizes` measures instead what every commit moves besides its requests: the table's metadata.json
(read and rewritten on each commit) at a number of retained snapshots and partitions in the offsets map, its
bytes and pyiceberg's CPU to parse it (a real table's metadata, its snapshot repeated; no services).

    .venv/bin/python -m bench.store_requests [--seconds 90] [--interval 1] [--rate 2000] [--out FILE]
    .venv/bin/python -m bench.store_requests --metadata-sizes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml

from tabletopic.local.ports import wait_for_port
from tabletopic.local.s3 import LocalS3

COUNTS_PATH = "/__request_counts__"
Key = tuple[str, str, str]  # client, operation, object kind


# -- what a request is (pure) --------------------------------------------------------------------------------

def client_of(user_agent: str) -> str:
    agent = user_agent.lower()
    if "aws-sdk-java" in agent:
        return "catalog"
    if "aws-sdk-cpp" in agent or "arrow" in agent or "aiobotocore" in agent:
        return "tabletopic"
    if "boto3" in agent or "botocore" in agent:
        return "setup"
    return f"other: {user_agent[:40]}"


def operation(method: str, path: str, query: str, copy_source: bool = False) -> str:
    """The S3 operation of a path-style request (`/bucket/key?query`)."""
    params = parse_qs(query, keep_blank_values=True)
    has_key = "/" in path.strip("/")
    if method == "HEAD":
        return "HEAD"
    if method == "GET":
        return "GET" if has_key and "uploads" not in params else "LIST"
    if method == "PUT":
        if "partNumber" in params:
            return "PUT part"
        return "COPY" if copy_source else "PUT"
    if method == "POST":
        if "uploads" in params:
            return "POST multipart start"
        if "uploadId" in params:
            return "POST multipart complete"
        if "delete" in params:
            return "DELETE batch"
        return "POST"
    if method == "DELETE":
        return "DELETE multipart abort" if "uploadId" in params else "DELETE"
    return method


def object_kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if "/" not in path.strip("/"):
        return "bucket"
    if name.endswith(".metadata.json"):
        return "metadata.json"
    if "/metadata/" in path and name.endswith(".avro"):
        return "manifest list" if name.startswith("snap-") else "manifest"
    if name.endswith(".parquet"):
        return "data file"
    return "other"


BILLING_CLASS = {"GET": "B", "HEAD": "B", "LIST": "A", "PUT": "A", "PUT part": "A", "COPY": "A", "POST": "A",
                 "POST multipart start": "A", "POST multipart complete": "A", "DELETE": "free",
                 "DELETE batch": "A", "DELETE multipart abort": "free"}


def difference(after: Mapping[Key, int], before: Mapping[Key, int]) -> Counter[Key]:
    return Counter({k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) > 0})


def summarize(delta: Mapping[Key, int], per: float = 1.0) -> dict[str, Any]:
    """Requests (divided by `per`) by operation, by client and operation, and by billing class."""
    by_op: Counter[str] = Counter()
    by_client_op: Counter[str] = Counter()
    by_op_kind: Counter[str] = Counter()
    classes: Counter[str] = Counter()
    for (client, op, kind), n in delta.items():
        by_op[op] += n
        by_client_op[f"{client} {op}"] += n
        by_op_kind[f"{op} {kind}"] += n
        classes[BILLING_CLASS.get(op, "?")] += n

    def scaled(counts: Counter[str]) -> dict[str, float]:
        return {k: round(n / per, 2) for k, n in sorted(counts.items())}

    return {"total": round(sum(delta.values()) / per, 2), "by_operation": scaled(by_op),
            "by_client": scaled(by_client_op), "by_object": scaled(by_op_kind), "by_class": scaled(classes)}


# -- the counting server (its own process) --------------------------------------------------------------------

class CountingApp:
    """moto's WSGI app, each request counted before moto answers it; GET COUNTS_PATH returns the counts."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.counts: Counter[Key] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == COUNTS_PATH:
            with self.lock:
                body = json.dumps([[*key, n] for key, n in self.counts.items()]).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        key = (client_of(environ.get("HTTP_USER_AGENT", "")),
               operation(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""),
                         "HTTP_X_AMZ_COPY_SOURCE" in environ),
               object_kind(path))
        with self.lock:
            self.counts[key] += 1
        return self.app(environ, start_response)


def serve(port: int) -> None:
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, CountingApp(app), threaded=True, request_handler=MotoRequestHandler)


class CountingS3(LocalS3):
    """LocalS3, served by the counting moto app instead of `moto.server` (the REST catalog's S3 as well)."""

    def start(self) -> CountingS3:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "s3.log").open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "bench.store_requests", "--serve", str(self.port)],
                                            stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent)
        wait_for_port(self.port, 30, "counting S3 server")
        return self

    def counts(self) -> Counter[Key]:
        with urllib.request.urlopen(self.endpoint + COUNTS_PATH, timeout=30) as answer:
            return Counter({(c, o, k): int(n) for c, o, k, n in json.load(answer)})


# -- the run ---------------------------------------------------------------------------------------------------

@dataclass
class WriterLog:
    """A writer's log events; the server's counts read at each `commit.done`."""

    s3: CountingS3
    events: list[dict[str, Any]] = field(default_factory=list)
    at_commit: list[Counter[Key]] = field(default_factory=list)

    def follow(self, lines: Iterable[bytes]) -> None:
        for event in _json_lines(lines):
            self.events.append(event)
            if event.get("event") == "commit.done":
                self.at_commit.append(self.s3.counts())

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e.get("event") == name)


def _json_lines(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            continue


def _table_state(catalog: Any, identifier: str) -> dict[str, int]:
    table = catalog.load_table(identifier)
    snapshot = table.current_snapshot()
    manifests = snapshot.manifests(table.io) if snapshot is not None else []
    return {"snapshots": len(table.snapshots()), "manifests": len(manifests),
            "data_files": sum(1 for _ in table.inspect.files().to_pylist()) if snapshot is not None else 0}


def measure(seconds: float, interval: float, rate: int, window: int, idle_seconds: float, keep: int,
            upload_mib: int, work: Path) -> dict[str, Any]:
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.compaction import rewrite
    from tabletopic.compaction.expire import expire
    from tabletopic.compaction.manifests import merge_manifests
    from tabletopic.compaction.orphans import remove_orphans
    from tabletopic.compaction.scheduler import MaintainedTable, TableState, compaction_pass
    from tabletopic.config import load_config
    from tabletopic.local.kafka import LocalKafka
    from tabletopic.local.rest_catalog import LocalRestCatalog
    from tabletopic.local.topics import create_topic, produce

    result: dict[str, Any] = {"interval_s": interval, "rate": rate, "seconds": seconds}
    kafka = LocalKafka(work / "kafka").start()
    s3 = CountingS3(work / "s3").start()
    rest = LocalRestCatalog(work / "rest", s3)
    try:
        rest.start()
        topic, identifier = "store-requests", "bench.store_requests"
        create_topic(kafka.bootstrap, topic, 4)
        config_path = work / "writer.yaml"
        config_path.write_text(yaml.safe_dump({
            "kafka": {"bootstrap.servers": kafka.bootstrap}, "group_id": "store-requests", "workers": 1,
            "catalog": {"name": "lake", **rest.client_properties()}, "commit": {"interval_seconds": interval},
            "maintenance": {"enabled": False}, "http": {"enabled": False},
            "tables": [{"table": identifier, "topic": topic}],
        }))
        stop = threading.Event()

        def feed() -> None:
            n = 0
            while not stop.is_set():
                started = time.monotonic()
                produce(kafka.bootstrap, topic, iter([(None, json.dumps({"n": i, "pad": "x" * 200}).encode())
                                                      for i in range(n, n + rate)]))
                n += rate
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

        writer = subprocess.Popen([sys.executable, "-m", "tabletopic", "run", "--config", str(config_path)],
                                  stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        log = WriterLog(s3)
        reader = threading.Thread(target=log.follow, args=(writer.stderr or [],))
        reader.start()
        feeder = threading.Thread(target=feed)
        feeder.start()
        time.sleep(seconds)
        stop.set()
        feeder.join()
        settled = len(log.at_commit)
        deadline = time.monotonic() + 10 * interval + 30
        while len(log.at_commit) == settled and time.monotonic() < deadline:  # the fed records' last commit
            time.sleep(0.2)
        time.sleep(interval + 1)
        idle_from = s3.counts()
        commits_before_idle = len(log.at_commit)
        time.sleep(idle_seconds)
        idle_to = s3.counts()
        writer.terminate()
        writer.wait(60)
        reader.join()

        commits = log.at_commit[:commits_before_idle]
        first = max(2, len(commits) - 1 - window)  # leave out start-up: the table's creation, the first commit
        if len(commits) - 1 - first < 1:
            raise RuntimeError(f"only {len(commits)} commits: run longer or with a shorter --interval")
        per = len(commits) - 1 - first
        result["writer_commit"] = {"commits_measured": per, "commits_total": len(commits),
                                   "conflicts": log.count("commit.conflict"),
                                   **summarize(difference(commits[-1], commits[first]), per)}
        result["writer_idle_per_minute"] = {
            "commits_during": len(log.at_commit) - commits_before_idle,
            **summarize(difference(idle_to, idle_from), idle_seconds / 60)}

        config = load_config(config_path, environ={})
        catalog = open_catalog(config.catalog)
        target = config.maintenance.target_file_size_bytes
        actions: dict[str, Any] = {}

        def action(name: str, run: Callable[[], Any]) -> None:
            state = _table_state(catalog, identifier)
            before = s3.counts()
            outcome = run()
            actions[name] = {"table_before": state, "outcome": str(outcome),
                             **summarize(difference(s3.counts(), before))}

        check = MaintainedTable(identifier, target)
        action("maintenance check, nothing due",
               lambda: compaction_pass(catalog, check, TableState(), config.maintenance, time.time()))
        action("manifest merge", lambda: merge_manifests(catalog, identifier, 2))
        action("compaction", lambda: rewrite.compact(catalog, identifier, target).files_removed)
        action("maintenance check after compaction",
               lambda: compaction_pass(catalog, check, TableState(), config.maintenance, time.time()))
        action("expiry", lambda: expire(catalog, identifier, int(time.time() * 1000), keep))
        action("orphan removal", lambda: len(remove_orphans(catalog, identifier, int(time.time() * 1000), False)))
        result["maintenance"] = actions
        result["table_after"] = _table_state(catalog, identifier)
        result["upload"] = _upload(catalog, identifier, s3, upload_mib)
    finally:
        rest.stop()
        s3.stop()
        kafka.stop()
    return result


def _upload(catalog: Any, identifier: str, s3: CountingS3, mib: int) -> dict[str, Any]:
    """One file of `mib` MiB written through the table's FileIO, as a data file is."""
    table = catalog.load_table(identifier)
    before = s3.counts()
    with table.io.new_output(f"{table.location()}/data/upload-probe.bin").create(overwrite=True) as out:
        block = os.urandom(1 << 20)
        for _ in range(mib):
            out.write(block)
    return {"mib": mib, **summarize(difference(s3.counts(), before))}


def metadata_sizes(snapshot_counts: Iterable[int], partition_counts: Iterable[int],
                   work: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table.metadata import TableMetadataUtil

    from tabletopic.commit.offsets import COMMIT_ID_KEY, WRITER_ID_KEY, encode_offsets, offsets_key

    catalog = SqlCatalog("probe", uri=f"sqlite:///{work}/catalog.db", warehouse=f"file://{work}/warehouse")
    catalog.create_namespace("bench")
    table = catalog.create_table("bench.sizes", pa.schema([("n", pa.int64())]))
    table.append(pa.table({"n": [1]}))
    base = json.loads(catalog.load_table("bench.sizes").metadata.model_dump_json())
    snapshot = base["snapshots"][0]
    rows = []
    for snapshots in snapshot_counts:
        for partitions in partition_counts:
            summary = {**snapshot["summary"], COMMIT_ID_KEY: "0d6f3c1e-6a4b-4bd2-9b7e-3f1e2a9c8d7f",
                       WRITER_ID_KEY: "worker-0d6f3c1e-1234", offsets_key("tabletopic"): encode_offsets(
                           {("orders-events", p): 12_345_678_901 for p in range(partitions)})}
            ids = range(10_000, 10_000 + snapshots)
            text = json.dumps({
                **base,
                "snapshots": [{**snapshot, "snapshot-id": i, "parent-snapshot-id": i - 1 if i > ids[0] else None,
                               "sequence-number": i - ids[0] + 1, "timestamp-ms": snapshot["timestamp-ms"] + i,
                               "summary": summary} for i in ids],
                "snapshot-log": [{"snapshot-id": i, "timestamp-ms": snapshot["timestamp-ms"] + i} for i in ids],
                "current-snapshot-id": ids[-1], "last-sequence-number": snapshots,
                "refs": {"main": {"snapshot-id": ids[-1], "type": "branch"}},
            })
            cpu = []
            for _ in range(3):
                started = time.process_time()
                TableMetadataUtil.parse_raw(text)
                cpu.append(time.process_time() - started)
            rows.append({"snapshots": snapshots, "partitions": partitions, "bytes": len(text),
                         "parse_cpu_ms": round(1000 * min(cpu), 1)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=90, help="how long the writer is fed")
    parser.add_argument("--interval", type=float, default=1.0, help="the writer's commit interval, seconds")
    parser.add_argument("--rate", type=int, default=2000, help="records per second fed")
    parser.add_argument("--window", type=int, default=30, help="commits averaged over (the last ones)")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--keep", type=int, default=10, help="snapshots the expiry keeps")
    parser.add_argument("--upload-mib", type=int, default=64)
    parser.add_argument("--metadata-sizes", action="store_true",
                        help="only the metadata.json size and parse CPU per retained snapshots and partitions")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory() as work:
        if args.metadata_sizes:
            rows = metadata_sizes((100, 1000, 3000, 6000), (4, 20, 200), Path(work))
            text = json.dumps(rows, indent=2)
            print(text)
            if args.out:
                args.out.write_text(text)
            return
        result = measure(args.seconds, args.interval, args.rate, args.window, args.idle_seconds, args.keep,
                         args.upload_mib, Path(work))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
