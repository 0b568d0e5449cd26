"""bench/plots.py draws the benchmark's three figures from a result as bench.run saves it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(fmt: str, workers: int, **extra: Any) -> dict[str, Any]:
    return {"format": fmt, "workers": workers, "mode": "stop when consumed", "records_per_s": 80_000,
            "records_per_s_excl_startup": 90_000, "peak_rss_largest_process_mib": 550.0, "rss_target_mib": 556,
            **extra}


def synthetic(**changes: Any) -> dict[str, Any]:
    results: dict[str, Any] = {
        "settings": {"records": 1000, "catalog": "pyiceberg SQLite catalog, local warehouse"},
        "runs": [run("json", 1, rss_over_time=[[0.0, 80.0], [0.5, 300.0], [1.0, 420.5]]),
                 run("avro", 2, rss_over_time=[[0.0, 90.0], [0.5, 350.0]])],
        "peer": {"tasks": 4, "records_per_s": 35_000, "records_per_s_excl_startup": 40_000, "peak_rss_mib": 1321.0},
        "freshness": [{"format": "json", "achieved_rate": 45_000, "p50_s": 6.0, "p99_s": 10.9, "max_s": 11.5,
                       "commit_interval_s": 10.0, "target_p99_s": 12.0,
                       "latency_quantiles_s": [0.2 + 0.11 * i for i in range(101)]}],
    }
    results.update(changes)
    return results


def assert_pngs(paths: list[Path], names: set[str]) -> None:
    assert {p.name for p in paths} == names
    for path in paths:
        assert path.stat().st_size > 1000, path
        assert path.read_bytes()[:8] == PNG_MAGIC, path


def test_a_result_with_samples_gives_the_three_figures(tmp_path: Path) -> None:
    out = tmp_path / "figures"
    assert_pngs(plots.draw(synthetic(), out), {plots.THROUGHPUT_PNG, plots.FRESHNESS_PNG, plots.RSS_PNG})


def test_an_older_result_without_samples_still_draws_from_its_percentiles_and_peaks(tmp_path: Path) -> None:
    older = synthetic(runs=[run("json", 1), run("json", 2, mode="interval commit")])
    del older["freshness"][0]["latency_quantiles_s"]
    assert_pngs(plots.draw(older, tmp_path), {plots.THROUGHPUT_PNG, plots.FRESHNESS_PNG, plots.RSS_PNG})


def test_a_result_without_freshness_or_peer_draws_what_it_has(tmp_path: Path) -> None:
    assert_pngs(plots.draw(synthetic(freshness=[], peer=None), tmp_path), {plots.THROUGHPUT_PNG, plots.RSS_PNG})


def test_the_cli_writes_beside_the_json(tmp_path: Path) -> None:
    result = tmp_path / "2026-12-01T100000.json"
    result.write_text(json.dumps(synthetic()))
    assert plots.main([str(result)]) == 0
    assert_pngs(sorted((tmp_path / "2026-12-01T100000").iterdir()),
                {plots.THROUGHPUT_PNG, plots.FRESHNESS_PNG, plots.RSS_PNG})


def test_the_tradeoff_curve_of_a_throttled_replay(tmp_path: Path) -> None:
    baseline = {"case": "baseline (no backfill)", "throttle": None, "p99_s": 10.6}
    replays = [{"case": f"backfill at {t}/s", "throttle": t, "p99_s": p99, "catch_up_s": took, "caught_up": True,
                "replay_exit": 0, "replay_records_per_s": t} for t, p99, took in ((20_000.0, 10.9, 260.0),
                                                                                   (40_000.0, 11.8, 130.0))]
    unthrottled = {"case": "backfill, unthrottled", "throttle": None, "p99_s": 13.0, "catch_up_s": 75.0,
                   "caught_up": True, "replay_exit": 0, "replay_records_per_s": 68_000}
    path = plots.tradeoff_figure([baseline, unthrottled, *replays], 15.0, tmp_path / "curve.png")
    assert path is not None and path.read_bytes().startswith(PNG_MAGIC)
    not_caught_up = {**unthrottled, "caught_up": False}
    assert plots.tradeoff_figure([baseline, not_caught_up], 15.0, tmp_path / "none.png") is None
