"""The benchmark's figures, drawn from the results `bench.run` saves (bench/results/<time>.json).

    .venv/bin/python -m bench.plots RESULTS.json [--out DIR]     # default DIR: beside RESULTS.json

Three PNGs, each drawn only when the results hold its data:

- records-per-second.png: records/s of every `tabletopic run`, excl. start-up and overall, beside
  Apache Iceberg's Kafka Connect sink when the run had `--peer`;
- freshness.png: per format, the share of records visible in the table within t seconds of being
  produced (the latency quantiles `bench.run` keeps; older results hold only p50, p99 and max),
  with the target (commit interval + 2 s);
- rss.png: the writer tree's summed resident set over each run (sampled while it ran), or, for
  results without samples, each run's peak beside the peer's; the target (buffer cap + 300 MiB).

`bench.run` calls `draw` at the end of every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a benchmark machine

import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first
from matplotlib.figure import Figure

THROUGHPUT_PNG = "records-per-second.png"
FRESHNESS_PNG = "freshness.png"
RSS_PNG = "rss.png"
TABLETOPIC_COLOR = "#1f6f8b"
STARTUP_COLOR = "#99c4d3"
PEER_COLOR = "#c0504d"


def run_label(run: dict[str, Any]) -> str:
    label = f"{run['format'].upper() if run['format'] == 'json' else run['format'].capitalize()} w{run['workers']}"
    return label + (", interval commit" if run.get("mode") == "interval commit" else "")


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def throughput_figure(results: dict[str, Any], path: Path) -> Path | None:
    runs = results.get("runs") or []
    peer = results.get("peer")
    bars: list[tuple[str, float, float, str]] = [
        (f"tabletopic {run_label(r)}", r["records_per_s_excl_startup"], r["records_per_s"], TABLETOPIC_COLOR)
        for r in runs]
    if peer:
        bars.append((f"Kafka Connect Iceberg sink, {peer['tasks']} tasks", peer["records_per_s_excl_startup"],
                     peer["records_per_s"], PEER_COLOR))
    if not bars:
        return None
    figure, axes = plt.subplots(figsize=(8, 0.6 * len(bars) + 1.6))
    ys = list(range(len(bars)))[::-1]
    axes.barh(ys, [b[1] for b in bars], color=[b[3] for b in bars], alpha=0.45, label="excl. start-up")
    axes.barh(ys, [b[2] for b in bars], color=[b[3] for b in bars], height=0.45, label="whole run")
    for y, (_, excl, whole, _) in zip(ys, bars, strict=True):
        axes.text(excl, y, f" {excl:,.0f}", va="center", fontsize=8)
        axes.text(whole, y - 0.12, f" {whole:,.0f}", va="top", fontsize=7, color="#333333")
    axes.set_yticks(ys, [b[0] for b in bars], fontsize=8)
    axes.set_xlabel("records/s")
    axes.set_xlim(0, max(b[1] for b in bars) * 1.2)
    axes.set_title(f"{results.get('settings', {}).get('records', 0):,} records per run; "
                   f"{results.get('settings', {}).get('catalog', '')}", fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def latency_points(fresh: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(seconds, share of records) pairs: every kept quantile, else the p50, p99 and max."""
    quantiles: Sequence[float] | None = fresh.get("latency_quantiles_s")
    if quantiles:
        step = 1 / (len(quantiles) - 1)
        return list(quantiles), [i * step for i in range(len(quantiles))]
    return [fresh["p50_s"], fresh["p99_s"], fresh["max_s"]], [0.5, 0.99, 1.0]


def freshness_figure(results: dict[str, Any], path: Path) -> Path | None:
    fresh = results.get("freshness") or []
    if not fresh:
        return None
    figure, axes = plt.subplots(figsize=(8, 4))
    for f in fresh:
        seconds, shares = latency_points(f)
        label = f"{f['format']} at {f['achieved_rate']:,}/s (p50 {f['p50_s']} s, p99 {f['p99_s']} s)"
        style = "-" if f.get("latency_quantiles_s") else "o"
        axes.plot(seconds, shares, style, drawstyle="default", label=label)
    target = fresh[0]["target_p99_s"]
    axes.axvline(target, color="#555555", linestyle="--", linewidth=1)
    axes.text(target, 0.02, f" target p99 ≤ {target:g} s", fontsize=8)
    axes.set_xlabel("seconds from produce to visible in the table")
    axes.set_ylabel("share of records")
    axes.set_ylim(0, 1.02)
    axes.set_xlim(left=0)
    axes.set_title(f"freshness, commit interval {fresh[0]['commit_interval_s']:g} s, "
                   "fed at half the measured max rate", fontsize=9)
    axes.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def rss_figure(results: dict[str, Any], path: Path) -> Path | None:
    runs = results.get("runs") or []
    if not runs:
        return None
    target = runs[0].get("rss_target_mib")
    sampled = [r for r in runs if r.get("rss_over_time")]
    figure, axes = plt.subplots(figsize=(8, 4))
    if sampled:
        for run in sampled:
            seconds = [point[0] for point in run["rss_over_time"]]
            mib = [point[1] for point in run["rss_over_time"]]
            axes.plot(seconds, mib, label=f"tabletopic {run_label(run)}")
        axes.set_xlabel("seconds from the writer's start")
        axes.set_ylabel("summed resident set of the writer's processes (MiB)")
        axes.set_title("memory over each run (sampled every 0.5 s)", fontsize=9)
    else:
        bars = [(f"tabletopic {run_label(r)}", r["peak_rss_largest_process_mib"], TABLETOPIC_COLOR)
                for r in runs if r.get("peak_rss_largest_process_mib") is not None]
        peer = results.get("peer")
        if peer:
            bars.append(("Kafka Connect Iceberg sink", peer["peak_rss_mib"], PEER_COLOR))
        ys = list(range(len(bars)))[::-1]
        axes.barh(ys, [b[1] for b in bars], color=[b[2] for b in bars])
        for y, (_, mib, _) in zip(ys, bars, strict=True):
            axes.text(mib, y, f" {mib:,.0f}", va="center", fontsize=8)
        axes.set_yticks(ys, [b[0] for b in bars], fontsize=8)
        axes.set_xlabel("peak resident set of the largest process (MiB)")
        axes.set_title("peak memory per run (no samples over time in these results)", fontsize=9)
    if target:
        line = axes.axhline if sampled else axes.axvline
        line(target, color="#555555", linestyle="--", linewidth=1, label=f"target {target} MiB per process")
    axes.legend(loc="best", fontsize=8)
    return _save(figure, path)


def tradeoff_figure(runs: Sequence[dict[str, Any]], p99_target_s: float, path: Path) -> Path | None:
    """A replay's throttle (bench.backfill, bench.rebuild) against the live table's p99 and the replay's time:
    one point per case that caught up, the unthrottled case at the rate it reached; the baseline's p99 as a line."""
    points = sorted((r["throttle"] or r["replay_records_per_s"], r["p99_s"], r["catch_up_s"], r["throttle"] is None)
                    for r in runs if r.get("caught_up") and r.get("replay_records_per_s"))
    if not points:
        return None
    baseline = next((r["p99_s"] for r in runs if "replay_exit" not in r), None)
    figure, live = plt.subplots(figsize=(7, 4))
    x = [p[0] / 1000 for p in points]
    live.plot(x, [p[1] for p in points], marker="o", color=TABLETOPIC_COLOR, label="live p99 (s)")
    live.axhline(p99_target_s, color="#555555", linestyle="--", linewidth=1, label=f"target {p99_target_s:.0f} s")
    if baseline is not None:
        live.axhline(baseline, color=STARTUP_COLOR, linestyle=":", linewidth=1, label=f"no replay {baseline:.1f} s")
    live.set_xlabel("replay's --max-records-per-second (thousands; the last point: unthrottled, at the rate reached)")
    live.set_ylabel("live table's freshness p99 (s)")
    live.set_ylim(bottom=0)
    taken = live.twinx()
    taken.plot(x, [p[2] for p in points], marker="s", color=PEER_COLOR, label="replay's time (s)")
    taken.set_ylabel("replay's time, launch to exit (s)")
    taken.set_ylim(bottom=0)
    lines = live.get_legend_handles_labels()[0] + taken.get_legend_handles_labels()[0]
    labels = live.get_legend_handles_labels()[1] + taken.get_legend_handles_labels()[1]
    live.legend(lines, labels, loc="lower left", fontsize=8)
    return _save(figure, path)


def draw(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Every figure the results hold data for, as PNGs in out_dir; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = [throughput_figure(results, out_dir / THROUGHPUT_PNG),
             freshness_figure(results, out_dir / FRESHNESS_PNG),
             rss_figure(results, out_dir / RSS_PNG)]
    return [path for path in drawn if path is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description="Draw the figures of a bench.run result")
    parser.add_argument("results", type=Path, help="a JSON file bench.run wrote (bench/results/<time>.json)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: beside the JSON, "
                                                               "in a folder named after it)")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    for path in draw(results, args.out or args.results.with_suffix("")):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
