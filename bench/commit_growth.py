"""What grows with a table's history, commit by commit: sizes and counts, not times (issue 14).

One process, W `Committer`s (one Kafka partition each) taking turns on one table of the embedded
SQLite catalog, with the project's maintenance run in line every few commits (compaction and
manifest merging, expiry keeping the newest `--keep`, orphan cleanup): the soak's workload without
its processes, so every figure is deterministic. Per commit it records the metadata.json it left
(bytes, snapshots, snapshot-log and metadata-log entries, refs, table properties, summary bytes),
the current snapshot's manifest list (manifests, bytes), and what the commit itself read: table
loads, metadata.json bytes parsed, manifest lists and manifests opened, and `copied_snaps`: the
snapshots pyiceberg's transaction deep-copied (it copies the metadata each time it reads it). Prints
one row per `--every` commits (`ms`: the median commit since the last row); on a shared machine
only the sizes are evidence.

    .venv/bin/python -m bench.commit_growth --commits 1500 [--writers 4] [--every 100] [--profile 100,1500]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.soak import GROUP, TABLE, TARGET_BYTES, TOPIC, _buffer, _catalog, _quiet, prepare

COLUMNS = ("commit", "meta_kb", "snaps", "snap_log", "meta_log", "refs", "props", "summaries_kb",
           "manifests", "mlist_kb", "files", "db_kb", "rss_mb", "py_objs_k", "loads", "parsed_kb", "mlists_read",
           "manifests_read", "copied_snaps", "ms")


@contextmanager
def counting_reads() -> Iterator[Counter[str]]:
    """Counts what pyiceberg reads while the block runs: table metadata parsed, manifest lists, manifests."""
    from unittest import mock

    from pyiceberg import manifest
    from pyiceberg.serializers import FromInputFile
    from pyiceberg.table import Transaction, snapshots

    counts: Counter[str] = Counter()
    parse, read_list = FromInputFile.table_metadata, manifest._manifests
    fetch = manifest.ManifestFile.fetch_manifest_entry
    transaction_metadata: Any = Transaction.table_metadata

    def parsing(input_file: Any, encoding: str = "utf-8") -> Any:
        counts["loads"] += 1
        counts["parsed_bytes"] += len(input_file)
        return parse(input_file, encoding)

    def reading_list(io_: Any, manifest_list: str) -> Any:
        counts["manifest_lists"] += 1
        return read_list(io_, manifest_list)

    def fetching(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["manifests"] += 1
        return fetch(self, *args, **kwargs)

    def copying(self: Any) -> Any:
        counts["copied_snapshots"] += len(self._table.metadata.snapshots)
        return transaction_metadata.fget(self)

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(Transaction, "table_metadata", property(copying)))
        stack.enter_context(mock.patch.object(FromInputFile, "table_metadata", staticmethod(parsing)))
        stack.enter_context(mock.patch.object(manifest, "_manifests", reading_list))
        stack.enter_context(mock.patch.object(snapshots, "_manifests", reading_list))
        stack.enter_context(mock.patch.object(manifest.ManifestFile, "fetch_manifest_entry", fetching))
        yield counts


def process_sizes(work: Path) -> dict[str, Any]:
    """What else could grow: files under the warehouse, the catalog database, this process's memory."""
    import gc
    import os

    return {
        "files": sum(1 for f in (work / "warehouse").rglob("*") if f.is_file()),
        "db_kb": round(sum(f.stat().st_size for f in work.glob("catalog.db*")) / 1024),
        "rss_mb": round(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20),
        "py_objs_k": round(len(gc.get_objects()) / 1000),
    }


def table_sizes(catalog: Any) -> dict[str, Any]:
    table = catalog.load_table(TABLE)
    metadata = table.metadata
    location = table.metadata_location.removeprefix("file://")
    current = table.current_snapshot()
    manifests = current.manifests(table.io) if current else []
    summaries = sum(len(json.dumps(s.summary.model_dump() if s.summary else {})) for s in metadata.snapshots)
    return {
        "meta_kb": round(Path(location).stat().st_size / 1024, 1),
        "snaps": len(metadata.snapshots),
        "snap_log": len(metadata.snapshot_log),
        "meta_log": len(metadata.metadata_log),
        "refs": len(metadata.refs),
        "props": len(metadata.properties),
        "summaries_kb": round(summaries / 1024, 1),
        "manifests": len(manifests),
        "mlist_kb": round(Path(current.manifest_list.removeprefix("file://")).stat().st_size / 1024, 1)
        if current else 0,
        "schemas": len(metadata.schemas),
        "specs": len(metadata.partition_specs),
        "statistics": len(metadata.statistics),
    }


def maintain(catalog: Any, commit: int, args: argparse.Namespace, started_ms: list[int]) -> dict[str, int]:
    """The scheduler's actions in line, on commit counts instead of clocks."""
    from tabletopic.compaction import expire, orphans
    from tabletopic.compaction.scheduler import MaintainedTable, TableState, compaction_pass
    from tabletopic.config import MaintenanceConfig

    done: dict[str, int] = {}
    if commit % args.compact_every == 0:
        settings = MaintenanceConfig(target_file_size_bytes=TARGET_BYTES, min_small_files=50, max_manifests=100)
        done.update(compaction_pass(catalog, MaintainedTable(TABLE, TARGET_BYTES), TableState(), settings, 0.0))
    if commit % args.expire_every == 0:
        result = expire.expire(catalog, TABLE, int(time.time() * 1000), args.keep)
        done["expired"], done["carried"] = result.expired, result.carried
    if commit % args.orphans_every == 0 and commit > args.orphans_every:
        # Older than the start of the commit `orphans_every` commits ago: nothing in flight here anyway.
        done["orphans"] = len(orphans.remove_orphans(catalog, TABLE, started_ms[commit - args.orphans_every],
                                                     dry_run=False))
    return done


def profile_text(profiler: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def run(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from tabletopic.commit.committer import Committer

    _quiet()
    prepare(work)
    catalog = _catalog(work)
    committers = [Committer(catalog, TABLE, GROUP, f"growth-{i}") for i in range(args.writers)]
    next_offset = [0] * args.writers
    profile_at = {int(n) for n in args.profile.split(",") if n}
    rows: list[dict[str, Any]] = []
    started_ms = [0]
    latencies: list[float] = []
    for commit in range(1, args.commits + 1):
        writer = commit % args.writers
        started_ms.append(int(time.time() * 1000))
        profiler = cProfile.Profile() if commit in profile_at else None
        with counting_reads() as reads:
            began = time.perf_counter()
            if profiler:
                profiler.enable()
            outcome = committers[writer].commit({(TOPIC, writer): _buffer(writer, next_offset[writer], args.rows)})
            if profiler:
                profiler.disable()
            latencies.append(time.perf_counter() - began)
        next_offset[writer] += args.rows
        assert outcome.committed == {(TOPIC, writer): next_offset[writer]}, outcome
        if profiler:
            print(f"--- profile of commit {commit}\n{profile_text(profiler, args.profile_top)}")
        done = maintain(catalog, commit, args, started_ms)
        if commit % args.every == 0 or commit == 1:
            row = {"commit": commit, **table_sizes(catalog), **process_sizes(work), "loads": reads["loads"],
                   "parsed_kb": round(reads["parsed_bytes"] / 1024, 1), "mlists_read": reads["manifest_lists"],
                   "manifests_read": reads["manifests"], "copied_snaps": reads["copied_snapshots"],
                   "ms": round(statistics.median(latencies) * 1000), **done}
            latencies.clear()
            rows.append(row)
            print("  ".join(f"{row.get(c, '')!s:>{max(len(c), 6)}}" for c in COLUMNS), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=1500)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--every", type=int, default=100, help="print a row every this many commits")
    parser.add_argument("--compact-every", type=int, default=5, help="compaction check (the soak: ~2 s at 2.6/s)")
    parser.add_argument("--expire-every", type=int, default=26, help="expiry (the soak: 10 s at 2.6/s)")
    parser.add_argument("--orphans-every", type=int, default=156, help="orphan cleanup (the soak: 60 s)")
    parser.add_argument("--keep", type=int, default=100, help="snapshots expiry keeps")
    parser.add_argument("--profile", default="", help="commit numbers to profile, comma-separated")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write every row here (JSON)")
    args = parser.parse_args()
    print("  ".join(f"{c:>{max(len(c), 6)}}" for c in COLUMNS))
    with tempfile.TemporaryDirectory(prefix="tabletopic-growth-") as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        rows = run(args, work)
    if args.out:
        args.out.write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
