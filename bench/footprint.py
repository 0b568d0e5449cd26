"""A sidecar's footprint (issue 22): the memory `tabletopic run` holds idle, per process.

    python -m bench.footprint [--workers N ...] [--settle SECONDS] [--results-md]

Starts a local Kafka broker, makes an empty 4-partition topic and runs `tabletopic run` on it with
the defaults (embedded SQLite catalog, local warehouse, maintenance and HTTP on; only the HTTP
port is chosen free). Once /readyz answers ok (every worker joined, catalog and broker reachable)
and `--settle` seconds more have passed, each process of the run is read from /proc:

- RSS (VmRSS): what `top` and most dashboards show; pages shared between processes count in each;
- PSS (smaps_rollup): each shared page divided among the processes sharing it, so the column sums
  to what the pool really holds; USS: the process's private pages, what its end would free.

`--workers` may be repeated; 0 means the default (one worker per usable CPU). Prints a markdown
table per run (with `--results-md`, one section ready for bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.measure import machine, process_tree
from tabletopic.local.ports import free_port

PARTITIONS = 4
READY_TIMEOUT_S = 180.0
MIB = 2**20


@dataclass
class Memory:
    rss: int
    pss: int | None  # None: smaps_rollup not readable (an older kernel, another user's process)
    uss: int | None


@dataclass
class Row:
    role: str
    pid: int
    memory: Memory


def memory_of(pid: int) -> Memory | None:
    """The process's resident set, and its proportional and unique sets when the kernel says them."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    fields: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024
    if "Pss" not in fields:
        return Memory(rss, None, None)
    return Memory(rss, fields["Pss"], fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0))


def role_of(pid: int, root: int, pool: bool) -> str:
    """What a process of the run is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = b" ".join(argv).decode(errors="replace")
    if pid == root:
        return "supervisor" if pool else "worker (serves HTTP)"
    if "resource_tracker" in text:
        return "multiprocessing resource tracker"
    if "multiprocessing" in text:
        return "maintenance"
    if "tabletopic" in text and "run" in text:
        return "worker"
    return f"other: {text[:60]}"


def sample(root: int, pool: bool) -> list[Row]:
    rows = []
    for pid in process_tree(root):
        memory = memory_of(pid)
        if memory is not None:
            rows.append(Row(role_of(pid, root, pool), pid, memory))
    order = {"supervisor": 0, "worker (serves HTTP)": 0, "worker": 1, "maintenance": 2}
    return sorted(rows, key=lambda row: (order.get(row.role, 3), row.pid))


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:.0f}"


def table(rows: Sequence[Row]) -> str:
    def total(pick: str) -> int | None:
        values = [getattr(row.memory, pick) for row in rows]
        return None if None in values else sum(values)

    lines = ["| process | pid | RSS MiB | PSS MiB | USS MiB |", "|---|---:|---:|---:|---:|"]
    workers = 0
    for row in rows:
        name = row.role
        if row.role == "worker":
            workers += 1
            name = f"worker {workers}"
        lines.append(f"| {name} | {row.pid} | {_mib(row.memory.rss)} | {_mib(row.memory.pss)} | "
                     f"{_mib(row.memory.uss)} |")
    lines.append(f"| **total** | | **{_mib(total('rss'))}** | **{_mib(total('pss'))}** | **{_mib(total('uss'))}** |")
    return "\n".join(lines)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def measure(work: Path, bootstrap: str, topic: str, workers: int, settle_s: float) -> list[Row]:
    """One `tabletopic run` on the empty topic, sampled once it is ready and settled; stopped after."""
    port = free_port()
    name = f"footprint-{workers or 'default'}"
    config: dict[str, Any] = {
        "kafka": {"bootstrap.servers": bootstrap},
        "group_id": name,
        "catalog": {"warehouse": str(work / name / "warehouse")},
        "http": {"port": port},
        "tables": [{"table": f"footprint.{name.replace('-', '_')}", "topic": topic}],
    }
    if workers:
        config["workers"] = workers
    (work / name).mkdir()
    path = work / name / "tabletopic.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (work / name / "run.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "tabletopic", "run", "--config", str(path)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=work / name)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tabletopic run never got ready (exit {process.poll()}); see {log.name}")
            time.sleep(0.5)
        time.sleep(settle_s)
        pool = len([pid for pid in process_tree(process.pid) if role_of(pid, process.pid, True) == "worker"]) > 0
        return sample(process.pid, pool)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def report(results: dict[str, list[Row]], facts: dict[str, str], settle_s: float) -> str:
    out = ["## Sidecar footprint (issue 22)", "",
           f"`python -m bench.footprint` — idle `tabletopic run` on an empty {PARTITIONS}-partition topic, defaults "
           f"(SQLite catalog, local warehouse, maintenance and HTTP on), sampled {settle_s:.0f} s after /readyz "
           "said ok. MiB; PSS divides shared pages among their processes (its total is what the pool holds).", "",
           "Machine: " + "; ".join(f"{k}: {v}" for k, v in facts.items()), ""]
    for label, rows in results.items():
        out += [f"### {label}", "", table(rows), ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    from tabletopic.local.kafka import LocalKafka
    from tabletopic.local.topics import create_topic

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, action="append",
                        help="worker count of a run, 0: the default (repeatable; default: 1 and the default)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds idle after ready before sampling")
    parser.add_argument("--results-md", action="store_true", help="print one section for bench/RESULTS.md")
    args = parser.parse_args(argv)
    counts = args.workers or [1, 0]

    work = Path(tempfile.mkdtemp(prefix="tabletopic-footprint-"))
    kafka = LocalKafka(work / "kafka").start()
    try:
        topic = "footprint"
        create_topic(kafka.bootstrap, topic, PARTITIONS)
        results: dict[str, list[Row]] = {}
        for count in counts:
            label = f"workers={count}" if count else f"workers=default ({_default_workers()} here)"
            print(f"[footprint] {label}", file=sys.stderr, flush=True)
            results[label] = measure(work, kafka.bootstrap, topic, count, args.settle)
    finally:
        kafka.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.results_md:
        print(report(results, machine(), args.settle))
    else:
        for label, rows in results.items():
            print(f"\n{label}\n\n{table(rows)}")
    return 0


def _default_workers() -> int:
    from tabletopic.config import default_workers

    return default_workers()


if __name__ == "__main__":
    raise SystemExit(main())
