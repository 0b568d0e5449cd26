"""Rebuild beside the live writer (issue 18; issue 22 item 1): the live table's freshness while
`tabletopic rebuild --no-cutover` replays its topic's history, unthrottled and throttled.

    .venv/bin/python -m bench.rebuild [--history 1000000] [--rate 5000] [--throttles 10000,25000,50000]
                                      [--baseline-seconds 60] [--format json] [--catalog sqlite|rest] [--results-md]

Cases, in this order: a baseline (no rebuild), the rebuild unthrottled, then the rebuild at each
`--max-records-per-second` of `--throttles`. Each case has its own topic and tables, so each
replays the same history:
1. `--history` records of bench/dataset.py are produced to a fresh 4-partition topic;
2. `tabletopic run` (one worker, commit interval 10 s, maintenance and HTTP off; bench/run.py's
   configuration) writes them to a fresh live table, until a snapshot holds them all;
3. bench/run.py's paced producer feeds the topic at `--rate` records/s, each record stamped with its
   produce time, and at once `tabletopic rebuild --table … --no-cutover [--max-records-per-second N]`
   starts as a child process with the live writer's own config (so the new version has the same
   projection: what is measured is the replay's cost, not a new partition spec's). NS.T__rebuild is
   created beforehand with the live table's columns, as the live table was. The producer stops when
   the rebuild exits (it has read as far as the live table holds); in the baseline after
   `--baseline-seconds`;
4. the live table's freshness over the records produced in that window, exactly as bench/run.py
   defines it (polled every 0.25 s; latency = the first poll that sees a snapshot covering the
   record's offset - its produce stamp; p50/p99 over records).

The rebuild's figures: records read (its own count), the time to catch up (from its launch to its
exit), records/s (records read over the time from its `rebuild.starts` log event to its exit: without
its start-up), its CPU (user + system from wait4), and the rows of NS.T__rebuild (must equal records
read). Ratios, within the run: the rebuild's records/s over the unthrottled rebuild's; the live p99
over the baseline's.

Why 5,000 records/s by default and not issue 22's "half of what the live writer sustains": on these two
cores that half is 30-60k records/s, and the rebuild shares the same two cores with the live writer, the
producer and the broker; it then reads barely faster than the topic grows, every throttle has to sit in
a narrow band above the rate (a throttle at or below it never catches up) and a run would not fit in
minutes. `--rate 50000 --throttles 60000,80000` asks issue 22's question on a larger machine.

Results: a table on stdout, JSON in bench/results/rebuild-<time>.json, and with `--results-md` the
table appended to bench/RESULTS.md under "Rebuild beside the live writer (issue 18)".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pyiceberg.catalog import Catalog

from bench import dataset
from bench.measure import machine
from bench.run import (
    Bench,
    PacedProducer,
    _table,
    code_version,
    committed,
    record_latencies,
    total_records,
    watch_until_covered,
)
from bench.stages import prepare_table
from bench.writer import WriterProcess
from tabletopic import logs
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.registry import LocalRegistry
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.s3 import LocalS3
from tabletopic.rebuild.plan import rebuild_name

RESULTS_MD = Path(__file__).parent / "RESULTS.md"
SECTION = "## Rebuild beside the live writer (issue 18)"
SLACK_S = 5.0  # issue 22: a user can hold the live p99 within interval + 5 s


@dataclass(frozen=True)
class Case:
    label: str
    replay: bool
    throttle: float | None = None  # --max-records-per-second


def cases(throttles: list[float], what: str = "rebuild") -> list[Case]:
    return [Case(f"baseline (no {what})", False), Case(f"{what}, unthrottled", True),
            *(Case(f"{what} at {t:,.0f}/s", True, t) for t in throttles)]


# --- the rebuild as a child process ----------------------------------------------------------


class ReplayProcess:
    """A replay (`tabletopic rebuild --no-cutover`, `tabletopic backfill`) as a child process, its output in files,
    reaped on a thread with wait4 (its exact CPU); `on_exit` runs as soon as it has exited. `started_event`: the
    log event that ends its start-up; `read_pattern`: the regex of its last line's count of records read."""

    def __init__(self, command: list[str], out: Path, on_exit: Callable[[], None], started_event: str,
                 read_pattern: str) -> None:
        self.stdout, self.stderr = out.with_suffix(".out"), out.with_suffix(".log")
        self.started_event, self.read_pattern = started_event, read_pattern
        self.launched_at = time.time()
        with self.stdout.open("w") as stdout, self.stderr.open("w") as stderr:
            self.process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        self.ended_at: float | None = None
        self.code: int | None = None
        self.cpu_s = 0.0
        self._on_exit = on_exit
        self._reaper = threading.Thread(target=self._reap, daemon=True, name="replay-reaper")
        self._reaper.start()

    def _reap(self) -> None:
        _, status, usage = os.wait4(self.process.pid, 0)
        self.ended_at = time.time()
        self.code = self.process.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self._on_exit()

    def stop(self) -> None:
        """Killed if it still runs (it did not catch up in time): a replay resumes, so nothing is lost."""
        if self.ended_at is None:
            self.process.kill()
        self._reaper.join(60)

    def records_read(self) -> int | None:
        found = re.search(self.read_pattern, self.stdout.read_text())
        return int(found.group(1)) if found else None

    def began_at(self) -> float | None:
        """The wall time of its start event: start-up (imports, catalog, log bounds) done."""
        for line in self.stderr.read_text().splitlines():
            if f'"{self.started_event}"' in line:
                stamp = json.loads(line).get("timestamp")
                return datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else None
        return None

    def tail(self) -> str:
        return "".join(self.stderr.read_text().splitlines(keepends=True)[-20:])


def rebuild_process(config: Path, table: str, throttle: float | None, out: Path, on_exit: Callable[[], None]
                    ) -> ReplayProcess:
    command = [sys.executable, "-m", "tabletopic", "rebuild", "--config", str(config), "--table", table,
               "--no-cutover"]
    if throttle is not None:
        command += ["--max-records-per-second", str(throttle)]
    return ReplayProcess(command, out, on_exit, "rebuild.starts", r"\((\d+) records read\)")


# --- one case --------------------------------------------------------------------------------


def run_case(bench: Bench, fmt: str, history: int, rate: float, case: Case, baseline_s: float,
             timeout_s: float) -> dict[str, Any]:
    name = f"rebuild_{uuid.uuid4().hex[:8]}"
    topic, table, group = f"bench-{name}", f"bench.{name}", f"bench-{name}"
    registry_url = bench.registry.url if bench.registry else None
    print(f"[{case.label}] producing {history:,} records of history", file=sys.stderr, flush=True)
    produced = dataset.produce(bench.kafka.bootstrap, topic, fmt, history, registry_url=registry_url)
    catalog = bench.open()
    prepare_table(catalog, table, fmt)
    if case.replay:
        prepare_table(catalog, rebuild_name(table), fmt)
    config = bench.config(name, topic, table, fmt, 1, bench.commit_interval_s)
    encode = dataset.encoder(fmt, registry_url, topic)
    window_s = timeout_s if case.replay else baseline_s
    values = [encode(e) for e in dataset.events(min(100_000, max(1, int(rate * window_s))), seed=dataset.SEED + 1)]
    writer = WriterProcess(config, bench.work / f"{name}.log", {}, bench.cpus)
    rebuild: ReplayProcess | None = None
    try:
        print(f"[{case.label}] the live writer takes the history", file=sys.stderr, flush=True)
        history_s = wait_for_history(catalog, table, group, produced.ends, writer, timeout_s)
        producer = PacedProducer(bench.kafka.bootstrap, topic, values, rate, window_s, dataset.PARTITIONS)
        started = time.time()
        cpu_before = writer.monitor.sample().cpu_s
        producer.start()
        if case.replay:
            print(f"[{case.label}] tabletopic rebuild --no-cutover, live feed at {rate:,.0f}/s", file=sys.stderr,
                  flush=True)
            rebuild = rebuild_process(config, table, case.throttle, bench.work / f"{name}-rebuild", producer.stop)
        else:
            print(f"[{case.label}] live feed at {rate:,.0f}/s for {baseline_s:.0f} s", file=sys.stderr, flush=True)
        seen = watch_until_covered(catalog, table, group, producer, writer,
                                   window_s + 3 * bench.commit_interval_s + 120)
        ended = rebuild.ended_at if rebuild is not None and rebuild.ended_at is not None else time.time()
        ended = min(ended, started + window_s)
        live_cpu_s, live_cpu_over_s = writer.monitor.sample().cpu_s - cpu_before, time.time() - started
    finally:
        if rebuild is not None:
            rebuild.stop()
        writer.stop()
    latency, _ = record_latencies(producer, seen)
    p99 = float(np.percentile(latency, 99))
    figures: dict[str, Any] = {
        "case": case.label, "throttle": case.throttle, "topic": topic, "table": table,
        "history": history, "history_s": round(history_s, 1), "rate_target": round(rate),
        "rate_achieved": round(producer.sent / max(1e-9, ended - started)), "window_s": round(ended - started, 1),
        "live_records": int(latency.size), "failed_deliveries": producer.failed, "live_commits": len(seen),
        "p50_s": round(float(np.percentile(latency, 50)), 2), "p99_s": round(p99, 2),
        "max_s": round(float(latency.max()), 2),
        "within_interval_plus_5s": p99 <= bench.commit_interval_s + SLACK_S,
        "live_writer_cpu_share": round(live_cpu_s / max(1e-9, live_cpu_over_s), 2),  # cores, window + last commit
    }
    if rebuild is not None:
        figures.update(replay_figures(bench, rebuild, rebuild_name(table)))
    print(f"[{case.label}] {json.dumps({k: v for k, v in figures.items() if k not in ('topic', 'table')})}",
          file=sys.stderr, flush=True)
    return figures


def wait_for_history(catalog: Catalog, table: str, group: str, ends: dict[tuple[str, int], int], writer: WriterProcess,
                     timeout_s: float) -> float:
    """Seconds until a snapshot of `table` holds every record up to `ends`."""
    started = time.monotonic()
    while committed(catalog, table, group, ends) is None:
        if not writer.alive():
            raise RuntimeError(f"{table}: the live writer exited before taking the history\n{writer.log_tail()}")
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{table}: the live writer did not take the history in {timeout_s:.0f} s\n"
                               f"{writer.log_tail()}")
        time.sleep(0.5)
    return time.monotonic() - started


def replay_figures(bench: Bench, replay: ReplayProcess, into: str) -> dict[str, Any]:
    read = replay.records_read()
    began = replay.began_at()
    caught_up = replay.code == 0 and read is not None
    ended = replay.ended_at or time.time()
    rows = total_records(bench.open().load_table(into))
    figures: dict[str, Any] = {"replay_exit": replay.code, "caught_up": caught_up, "replay_read": read,
                               "replay_rows": rows, "replay_cpu_s": round(replay.cpu_s, 1),
                               "catch_up_s": round(ended - replay.launched_at, 1)}
    if caught_up and read and began is not None:
        figures["replay_startup_s"] = round(began - replay.launched_at, 1)
        figures["replay_records_per_s"] = round(read / max(1e-9, ended - began))
        figures["replay_cpu_s_per_million"] = round(replay.cpu_s / read * 1e6, 1)
    else:
        figures["replay_log_tail"] = replay.tail()
    return figures


# --- ratios and the report -------------------------------------------------------------------


def with_ratios(runs: list[dict[str, Any]]) -> None:
    """Each rebuild's records/s over the unthrottled one's, each live p99 over the baseline's (same run)."""
    baseline = next((r for r in runs if r["case"].startswith("baseline")), None)
    unthrottled = next((r for r in runs if "replay_exit" in r and r["throttle"] is None), None)
    for run in runs:
        if baseline is not None and baseline["p99_s"] > 0:
            run["p99_ratio_to_baseline"] = round(run["p99_s"] / baseline["p99_s"], 2)
        full = unthrottled.get("replay_records_per_s") if unthrottled is not None else None
        if full and run.get("replay_records_per_s"):
            run["replay_ratio_to_unthrottled"] = round(run["replay_records_per_s"] / full, 2)


def rows_of(runs: list[dict[str, Any]], interval_s: float, what: str = "rebuild") -> list[list[str]]:
    def figure(run: dict[str, Any], key: str, form: str = "{:,}") -> str:
        value = run.get(key)
        return "-" if value is None else form.format(value)

    rows = [["case", "live rec/s", "live p50 s", "live p99 s", "p99 / baseline", f"p99 <= {interval_s + SLACK_S:.0f} s",
             f"{what} read", f"{what} rec/s", "rec/s / unthrottled", "catch-up s", f"{what} CPU s/M", "rows = read"]]
    for run in runs:
        rebuilt = "replay_exit" in run
        rows.append([
            run["case"], figure(run, "rate_achieved"), figure(run, "p50_s", "{:.2f}"), figure(run, "p99_s", "{:.2f}"),
            figure(run, "p99_ratio_to_baseline", "{:.2f}"), "yes" if run["within_interval_plus_5s"] else "no",
            figure(run, "replay_read"), figure(run, "replay_records_per_s"),
            figure(run, "replay_ratio_to_unthrottled", "{:.2f}"),
            (figure(run, "catch_up_s", "{:.1f}") if run.get("caught_up") else "not caught up") if rebuilt else "-",
            figure(run, "replay_cpu_s_per_million", "{:.1f}"),
            ("yes" if run["replay_rows"] == run["replay_read"] else "NO") if rebuilt else "-",
        ])
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)


def machine_note(results: dict[str, Any]) -> str:
    facts = results["machine"]
    code = results["code_at_start"]
    load_at_start = facts.get("Load average (1, 5, 15 min) at start", "?")
    return (f"{facts.get('Model name', '?')}, {facts.get('CPU(s)', '?')} CPUs, {facts.get('Memory', '?')}, "
            f"Python {facts.get('Python', '?')}; load average (1, 5, 15 min) {load_at_start} at the start, "
            f"{results.get('load_at_end', '?')} at the end; {results['settings']['catalog']}; code {code['commit']}, "
            f"uncommitted in tabletopic/: {uncommitted(code)}{changed_note(results)}")


def changed_note(results: dict[str, Any]) -> str:
    start, end = results["code_at_start"], results.get("code_at_end", {})
    if end.get("tabletopic_sources_sha256") in (None, start["tabletopic_sources_sha256"]):
        return ""
    return ("; tabletopic's sources changed during the run (processes started later ran other code; uncommitted at "
            f"the end: {uncommitted(end)})")


def uncommitted(code: dict[str, Any]) -> str:
    return ", ".join(line.split()[-1] for line in code["uncommitted"]) or "none"


def append_results(path: Path, results: dict[str, Any]) -> None:
    settings = results["settings"]
    text = path.read_text() if path.exists() else ""
    out: list[str] = []
    if SECTION not in text:
        out += ["", SECTION, "",
                "`bench/rebuild.py`: per case a fresh topic with the same history, taken by a live `tabletopic run`; "
                "then a paced producer feeds the topic while `tabletopic rebuild --no-cutover` replays it (same "
                "projection), and the live table's freshness is measured as bench/run.py does over the records "
                "produced while the rebuild runs (the baseline: no rebuild, a fixed window). Ratios are to the "
                "baseline's p99 and the unthrottled rebuild's records/s of the same run. Catch-up: from the "
                "rebuild's launch to its exit; records/s: over the time from its `rebuild.starts` event."]
    out += ["", f"### {results['started'][:16].replace('T', ' ')} UTC: {settings['history']:,} records of history, "
                f"live feed {settings['rate']:,.0f}/s, commit interval {settings['commit_interval_s']:.0f} s "
                f"({settings['format']})",
            "", "```sh", results["command"], "```", "",
            f"Machine: {machine_note(results)}.", "",
            markdown(rows_of(results["runs"], settings["commit_interval_s"])), ""]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(out))


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rebuild",
        description="The live table's freshness while a rebuild replays its topic, unthrottled and throttled.")
    parser.add_argument("--history", type=int, default=1_000_000, help="records the rebuild replays (default 1M)")
    parser.add_argument("--rate", type=float, default=5000.0, help="the live feed, records/s (default 5,000)")
    parser.add_argument("--throttles", default="10000,25000,50000",
                        help="--max-records-per-second settings, each above --rate (default 10000,25000,50000)")
    parser.add_argument("--baseline-seconds", type=float, default=60.0)
    parser.add_argument("--format", choices=dataset.FORMATS, default="json")
    parser.add_argument("--catalog", choices=("sqlite", "rest"), default="sqlite")
    parser.add_argument("--commit-interval", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a rebuild may take to catch up")
    parser.add_argument("--results-md", action="store_true", help=f"append the table to {RESULTS_MD}")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/rebuild-*.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    args = parser.parse_args(argv)
    throttles = [float(t) for t in args.throttles.split(",") if t.strip()]
    if any(t <= args.rate for t in throttles):
        parser.error(f"a throttle at or below the live rate ({args.rate:,.0f}/s) never catches up")
    logs.configure("warning")
    settings = {"history": args.history, "rate": args.rate, "throttles": throttles, "format": args.format,
                "baseline_s": args.baseline_seconds, "commit_interval_s": args.commit_interval,
                "partitions": dataset.PARTITIONS}
    results = begin_results("bench.rebuild", argv, settings)
    with contextlib.ExitStack() as cleanup:
        work = work_folder(cleanup, "rebuild", args.keep)
        bench = start_services(cleanup, work, args.format, args.catalog, args.commit_interval)
        settings["catalog"] = bench.catalog_kind
        for case in cases(throttles):
            results["runs"].append(run_case(bench, args.format, args.history, args.rate, case,
                                            args.baseline_seconds, args.timeout))
    end_results(results)
    out = args.out or Path(__file__).parent / "results" / f"rebuild-{results['started'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"{settings['catalog']}; {args.history:,} records of history; live feed {args.rate:,.0f}/s; "
          f"commit interval {args.commit_interval:.0f} s\n")
    print(_table(rows_of(results["runs"], args.commit_interval)))
    if args.results_md:
        append_results(RESULTS_MD, results)
        print(f"\nappended to {RESULTS_MD}")
    print(f"\nresults: {out}")
    ok = all(r.get("caught_up", True) and r.get("replay_rows", 0) == r.get("replay_read", 0) for r in results["runs"])
    return 0 if ok else 1


def begin_results(module: str, argv: list[str] | None, settings: dict[str, Any]) -> dict[str, Any]:
    command = " ".join([f"python -m {module}", *(sys.argv[1:] if argv is None else argv)])
    return {"started": datetime.now(UTC).isoformat(timespec="seconds"), "command": command, "settings": settings,
            "machine": machine(), "code_at_start": code_version(), "runs": []}


def end_results(results: dict[str, Any]) -> None:
    with_ratios(results["runs"])
    results["code_at_end"] = code_version()
    results["load_at_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])


def work_folder(cleanup: contextlib.ExitStack, name: str, keep: bool) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f"tabletopic-bench-{name}-"))
    if keep:
        cleanup.callback(print, f"work folder kept: {work}", file=sys.stderr)
    else:
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
    return work


def start_services(cleanup: contextlib.ExitStack, work: Path, fmt: str, catalog: str, interval_s: float) -> Bench:
    """Local Kafka (and the registry for Avro); the SQLite catalog, or the REST catalog over S3 (moto)."""
    kafka = LocalKafka(work / "kafka").start()
    cleanup.callback(kafka.stop)
    registry = None
    if fmt == "avro":
        registry = LocalRegistry(work / "registry").start()
        cleanup.callback(registry.stop)
    if catalog == "sqlite":
        return Bench(work, kafka, registry, None, None, interval_s, None, {"warehouse": str(work / "warehouse")})
    s3 = LocalS3(work / "s3").start()
    cleanup.callback(s3.stop)
    rest = LocalRestCatalog(work / "rest", s3).start()
    cleanup.callback(rest.stop)
    return Bench(work, kafka, registry, rest, s3, interval_s, None, {"name": "lake", **rest.client_properties()})

if __name__ == "__main__":
    sys.exit(main())
