"""Catch-up beside the tail (issue 22 item 1): the live table's freshness while `tabletopic backfill` replays
a large history into a new table on the same machine, unthrottled and at each `--max-records-per-second`.

    .venv/bin/python -m bench.backfill [--history 5000000] [--rate 30000] [--throttles 20000,40000,60000]
                                       [--baseline-seconds 60] [--format json] [--catalog sqlite|rest] [--results-md]

One topic (4 partitions) holds `--history` records of bench/dataset.py; one live `tabletopic run` (one
worker, bench/run.py's configuration) takes them into the live table and keeps running through every
case. Then, case after case, bench/run.py's paced producer feeds the topic at `--rate` records/s (each
record stamped with its produce time) while `tabletopic backfill --table LIVE --into NEW --from-offset 0
--to-offset H` (H: where the history ends, so every case replays the same records; NEW made beforehand
with the live table's columns) runs as a child process. The feed stops when the backfill exits; in the
baseline (no backfill) after `--baseline-seconds`. The live table's freshness is bench/run.py's: over the
records fed in the case's window, latency = the first poll (every 0.25 s) that sees a snapshot covering the
record's offset - its produce stamp.

The backfill's figures: records read (its own count), the time it took (launch to exit), records/s over the
time from its `backfill.starts` event (start-up excluded), its CPU (wait4) and the rows of NEW (must equal
records read). Ratios within the run: the live p99 over the baseline's, records/s over the unthrottled
backfill's. The trade-off curve (throttle against the live p99 and the backfill's time) is drawn to
bench/results/backfill-<time>.png.

The default feed, 30,000 records/s, is half of what one live worker sustains on these two cores (bench/run.py,
run E in bench/RESULTS.md): the issue's "half the live writer's max rate".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import dataset
from bench.plots import tradeoff_figure
from bench.rebuild import (
    RESULTS_MD,
    SLACK_S,
    Case,
    ReplayProcess,
    begin_results,
    cases,
    end_results,
    machine_note,
    markdown,
    replay_figures,
    rows_of,
    start_services,
    wait_for_history,
    work_folder,
)
from bench.run import Bench, PacedProducer, _table, record_latencies, watch_until_covered
from bench.stages import prepare_table
from bench.writer import WriterProcess
from tabletopic import logs

SECTION = "## Catch-up beside the tail: backfill (issue 22)"


@dataclass
class Live:
    """The topic, its history and the live writer every case shares."""

    name: str
    topic: str
    table: str
    group: str
    config: Path
    history_end: int  # every partition's offset where the history ends
    writer: WriterProcess


def start_live(bench: Bench, fmt: str, history: int, timeout_s: float) -> tuple[Live, float]:
    if history % dataset.PARTITIONS:
        raise ValueError(f"--history must be a multiple of {dataset.PARTITIONS} (the records go round the partitions)")
    name = f"backfill_{uuid.uuid4().hex[:8]}"
    topic, table = f"bench-{name}", f"bench.{name}"
    registry_url = bench.registry.url if bench.registry else None
    print(f"producing {history:,} records of history", file=sys.stderr, flush=True)
    produced = dataset.produce(bench.kafka.bootstrap, topic, fmt, history, registry_url=registry_url)
    prepare_table(bench.open(), table, fmt)
    config = bench.config(name, topic, table, fmt, 1, bench.commit_interval_s)
    writer = WriterProcess(config, bench.work / f"{name}.log", {}, bench.cpus)
    print("the live writer takes the history", file=sys.stderr, flush=True)
    history_s = wait_for_history(bench.open(), table, f"bench-{name}", produced.ends, writer, timeout_s)
    return Live(name, topic, table, f"bench-{name}", config, history // dataset.PARTITIONS, writer), history_s


def backfill_process(live: Live, into: str, throttle: float | None, out: Path, on_exit: Any) -> ReplayProcess:
    command = [sys.executable, "-m", "tabletopic", "backfill", "--config", str(live.config), "--topic", live.topic,
               "--table", live.table, "--into", into, "--from-offset", "0", "--to-offset", str(live.history_end)]
    if throttle is not None:
        command += ["--max-records-per-second", str(throttle)]
    return ReplayProcess(command, out, on_exit, "backfill.starts", r"backfill done: (\d+) records")


def run_case(bench: Bench, live: Live, fmt: str, rate: float, case: Case, baseline_s: float, timeout_s: float
             ) -> dict[str, Any]:
    into = f"{live.table}_into_{uuid.uuid4().hex[:6]}"
    if case.replay:
        prepare_table(bench.open(), into, fmt)
    window_s = timeout_s if case.replay else baseline_s
    encode = dataset.encoder(fmt, bench.registry.url if bench.registry else None, live.topic)
    values = [encode(e) for e in dataset.events(min(100_000, max(1, int(rate * window_s))), seed=dataset.SEED + 1)]
    producer = PacedProducer(bench.kafka.bootstrap, live.topic, values, rate, window_s, dataset.PARTITIONS)
    started = time.time()
    cpu_before = live.writer.monitor.sample().cpu_s
    producer.start()
    replay: ReplayProcess | None = None
    try:
        if case.replay:
            print(f"[{case.label}] tabletopic backfill, live feed at {rate:,.0f}/s", file=sys.stderr, flush=True)
            replay = backfill_process(live, into, case.throttle, bench.work / f"{into}", producer.stop)
        else:
            print(f"[{case.label}] live feed at {rate:,.0f}/s for {baseline_s:.0f} s", file=sys.stderr, flush=True)
        seen = watch_until_covered(bench.open(), live.table, live.group, producer, live.writer,
                                   window_s + 3 * bench.commit_interval_s + 120)
        ended = replay.ended_at if replay is not None and replay.ended_at is not None else time.time()
        ended = min(ended, started + window_s)
        live_cpu_s, live_cpu_over_s = live.writer.monitor.sample().cpu_s - cpu_before, time.time() - started
    finally:
        if replay is not None:
            replay.stop()
        producer.stop()
    latency, _ = record_latencies(producer, seen)
    p99 = float(np.percentile(latency, 99))
    figures: dict[str, Any] = {
        "case": case.label, "throttle": case.throttle, "table": into if case.replay else None,
        "rate_target": round(rate), "rate_achieved": round(producer.sent / max(1e-9, ended - started)),
        "window_s": round(ended - started, 1), "live_records": int(latency.size),
        "failed_deliveries": producer.failed, "live_commits": len(seen),
        "p50_s": round(float(np.percentile(latency, 50)), 2), "p99_s": round(p99, 2),
        "max_s": round(float(latency.max()), 2),
        "within_interval_plus_5s": p99 <= bench.commit_interval_s + SLACK_S,
        "live_writer_cpu_share": round(live_cpu_s / max(1e-9, live_cpu_over_s), 2),
    }
    if replay is not None:
        figures.update(replay_figures(bench, replay, into))
    print(f"[{case.label}] {json.dumps(figures)}", file=sys.stderr, flush=True)
    return figures


def append_results(path: Path, results: dict[str, Any], plot: Path | None) -> None:
    settings = results["settings"]
    text = path.read_text() if path.exists() else ""
    out: list[str] = []
    if SECTION not in text:
        out += ["", SECTION, "", "`bench/backfill.py` (its docstring says what is measured and how)."]
    out += ["", f"### {results['started'][:16].replace('T', ' ')} UTC: {settings['history']:,} records of history, "
                f"live feed {settings['rate']:,.0f}/s, commit interval {settings['commit_interval_s']:.0f} s "
                f"({settings['format']}; the live writer took the history in {results['history_s']:.0f} s)",
            "", "```sh", results["command"], "```", "", f"Machine: {machine_note(results)}.", "",
            markdown(rows_of(results["runs"], settings["commit_interval_s"], "backfill")), ""]
    if plot is not None:
        out += [f"![throttle against live p99 and backfill time]({plot.relative_to(path.parent)})", ""]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backfill",
        description="The live table's freshness while a backfill replays its topic's history, throttled or not.")
    parser.add_argument("--history", type=int, default=5_000_000, help="records the backfill replays (default 5M)")
    parser.add_argument("--rate", type=float, default=30_000.0, help="the live feed, records/s (default 30,000)")
    parser.add_argument("--throttles", default="20000,40000,60000", help="--max-records-per-second settings")
    parser.add_argument("--baseline-seconds", type=float, default=60.0)
    parser.add_argument("--format", choices=dataset.FORMATS, default="json")
    parser.add_argument("--catalog", choices=("sqlite", "rest"), default="sqlite")
    parser.add_argument("--commit-interval", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds a backfill may take")
    parser.add_argument("--results-md", action="store_true", help=f"append the table to {RESULTS_MD}")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    args = parser.parse_args(argv)
    throttles = [float(t) for t in args.throttles.split(",") if t.strip()]
    logs.configure("warning")
    settings = {"history": args.history, "rate": args.rate, "throttles": throttles, "format": args.format,
                "baseline_s": args.baseline_seconds, "commit_interval_s": args.commit_interval,
                "partitions": dataset.PARTITIONS}
    results = begin_results("bench.backfill", argv, settings)
    with contextlib.ExitStack() as cleanup:
        work = work_folder(cleanup, "backfill", args.keep)
        bench = start_services(cleanup, work, args.format, args.catalog, args.commit_interval)
        settings["catalog"] = bench.catalog_kind
        live, results["history_s"] = start_live(bench, args.format, args.history, args.timeout)
        cleanup.callback(live.writer.stop)
        for case in cases(throttles, "backfill"):
            results["runs"].append(run_case(bench, live, args.format, args.rate, case, args.baseline_seconds,
                                            args.timeout))
    end_results(results)
    stem = Path(__file__).parent / "results" / f"backfill-{results['started'].replace(':', '')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    plot = tradeoff_figure(results["runs"], args.commit_interval + SLACK_S, stem.with_suffix(".png"))
    print(f"{settings['catalog']}; {args.history:,} records of history; live feed {args.rate:,.0f}/s; "
          f"commit interval {args.commit_interval:.0f} s\n")
    print(_table(rows_of(results["runs"], args.commit_interval, "backfill")))
    if args.results_md:
        append_results(RESULTS_MD, results, plot)
        print(f"\nappended to {RESULTS_MD}")
    print(f"\nresults: {stem.with_suffix('.json')}" + (f", {plot}" if plot else ""))
    ok = all(r.get("caught_up", True) and r.get("replay_rows", 0) == r.get("replay_read", 0) for r in results["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
