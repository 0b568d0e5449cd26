"""Built-in maintenance: a process beside the writers that compacts, expires and cleans each table
when its triggers say so. Started by `tabletopic run` (unless `maintenance.enabled: false`) at a
lower CPU priority; it never blocks a data commit (compaction rebases on the writers' appends).

Triggers, per table, checked every `check_interval_seconds`: small files in the current
snapshot (at least `min_small_files`, or a target file's worth of bytes in them), or
`max_delete_files` live equality-delete files in it (an upsert table) → compact;
`max_manifests` manifests in it → merge them;
every `expire_interval_seconds` → expire; every `orphans_interval_seconds` → orphan cleanup.
Compaction (with manifest merging) and cleanup (expiry, orphans) run in two loops on two threads,
each with its own catalog client: expiry never waits behind a compaction.

The tables are every table the writer writes (resolver.py): each configured table, each route
target, each `topic_pattern` table of a topic that exists (listed from the broker every check),
and their `<table>__dlq`; one that does not exist yet is passed over.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog
from pyiceberg.catalog import Catalog

from tabletopic.catalog.reader import live_files
from tabletopic.catalog.tables import load_if_exists
from tabletopic.config import Config, MaintenanceConfig
from tabletopic.resolver import has_patterns, resolve

log = structlog.get_logger(__name__)

NICENESS = 10


@dataclass
class TableState:
    last_expire: float = 0.0
    last_orphans: float = 0.0


@dataclass
class SmallFiles:
    count: int = 0
    bytes: int = 0
    delete_files: int = 0  # live equality-delete files: each commit of an upsert table adds some


@dataclass
class Due:
    compact: str | None = None  # the reason, for the log
    expire: bool = False
    orphans: bool = False
    reasons: list[str] = field(default_factory=list)


def due(now: float, state: TableState, small: SmallFiles, settings: MaintenanceConfig,
        target_bytes: int | None = None) -> Due:
    """What to run on one table now (`target_bytes`: the table's own target file size, if it has one). Pure."""
    result = Due()
    target = target_bytes or settings.target_file_size_bytes
    if small.count >= 2 and (small.count >= settings.min_small_files or small.bytes >= target):
        result.compact = f"{small.count} small files, {small.bytes} bytes"
    elif small.delete_files >= settings.max_delete_files:
        result.compact = f"{small.delete_files} equality-delete files"
    result.expire = now - state.last_expire >= settings.expire_interval_seconds
    result.orphans = now - state.last_orphans >= settings.orphans_interval_seconds
    return result


@dataclass(frozen=True)
class MaintainedTable:
    identifier: str
    target_bytes: int  # its target file size: the table's own, else maintenance.target_file_size_bytes


def maintained_tables(config: Config, topics: Iterable[str] = ()) -> list[MaintainedTable]:
    """Every table the writer writes, given the topics that exist (for `topic_pattern`). Pure."""
    found: dict[str, MaintainedTable] = {}
    for table in resolve(config, topics).tables:
        target = table.spec.target_file_size_bytes or config.maintenance.target_file_size_bytes
        for identifier in (table.identifier, table.dead_letters):
            if identifier is not None and identifier not in found:
                found[identifier] = MaintainedTable(identifier, target)
    return list(found.values())


def small_files(catalog: Catalog, identifier: str, target_bytes: int) -> SmallFiles:
    table = load_if_exists(catalog, identifier)
    if table is None or table.current_snapshot() is None:
        return SmallFiles()
    listing = live_files(table)  # not table.scan(): pyiceberg refuses to plan one over equality deletes
    small = [f.file.file_size_in_bytes for f in listing.data if f.file.file_size_in_bytes < target_bytes * 3 // 4]
    return SmallFiles(len(small), sum(small), len(listing.equality_deletes))


def compaction_pass(catalog: Catalog, table: MaintainedTable, state: TableState, settings: MaintenanceConfig,
                    now: float) -> dict[str, int]:
    """Compact one table if its small files say so, and merge its manifests past the threshold."""
    from tabletopic.compaction import rewrite
    from tabletopic.compaction.manifests import merge_manifests
    from tabletopic.observe import metrics

    done: dict[str, int] = {}
    todo = due(now, state, small_files(catalog, table.identifier, table.target_bytes), settings, table.target_bytes)
    if todo.compact:
        log.info("maintenance.triggered", table=table.identifier, action="compact", reason=todo.compact)
        result = rewrite.compact(catalog, table.identifier, table.target_bytes)
        metrics.record_compaction(table.identifier, result.files_removed)
        done["compacted"], done["compaction_attempts"] = result.files_removed, result.attempts
        done["compaction_abandoned"] = int(result.abandoned)
    done["manifests_merged"] = merge_manifests(catalog, table.identifier, settings.max_manifests)  # no-op below it
    return done


def cleanup_pass(catalog: Catalog, table: MaintainedTable, state: TableState, settings: MaintenanceConfig,
                 now: float) -> dict[str, int]:
    """Expire one table's snapshots and remove its orphans when their schedules say so."""
    from tabletopic.compaction import expire, orphans

    done: dict[str, int] = {}
    todo = due(now, state, SmallFiles(), settings)
    if todo.expire:
        log.info("maintenance.triggered", table=table.identifier, action="expire", reason="schedule")
        result = expire.expire(catalog, table.identifier,
                               int(time.time() * 1000 - settings.expire_older_than_hours * 3.6e6),
                               settings.keep_snapshots)
        state.last_expire = now
        done["expired"], done["carried"] = result.expired, result.carried
    if todo.orphans:
        log.info("maintenance.triggered", table=table.identifier, action="orphans", reason="schedule")
        removed = orphans.remove_orphans(catalog, table.identifier,
                                         int(time.time() * 1000 - settings.orphans_older_than_hours * 3.6e6),
                                         dry_run=False)
        state.last_orphans = now
        done["orphans"] = len(removed)
    return done


Pass = Callable[[Catalog, MaintainedTable, TableState, MaintenanceConfig, float], dict[str, int]]


def run_forever(config: Config, stopping: Callable[[], bool] = lambda: False) -> None:
    """The maintenance process: its logging and CPU priority, then `maintain_forever`."""
    from tabletopic import logs

    logs.configure(config.log_level, secrets=config.secret_values)
    os.nice(NICENESS)
    maintain_forever(config, stopping)


def maintain_forever(config: Config, stopping: Callable[[], bool] = lambda: False) -> None:
    """Compaction and cleanup (expiry, orphans) in loops of their own, on two threads: a slow or
    failing compaction (a busy table, a conflict storm) never delays expiry, which is what keeps
    the history, and so every writer's commit, short."""
    cleanup = threading.Thread(target=_loop, args=(config, stopping, "cleanup", cleanup_pass),
                               name="tabletopic-maintenance-cleanup", daemon=True)
    cleanup.start()
    _loop(config, stopping, "compaction", compaction_pass)
    cleanup.join()  # not on an error: the thread is a daemon, it ends with the process


def _loop(config: Config, stopping: Callable[[], bool], name: str, run_pass: Pass) -> None:
    """One kind of maintenance over every table, every `check_interval_seconds`; one table's failure is
    logged and the others go on."""
    from tabletopic.catalog.loader import open_catalog

    settings = config.maintenance
    catalog = open_catalog(config.catalog)  # one per loop: the threads share no client
    # The first expiry and orphan runs wait one interval: a restart loop must not turn into a cleanup loop.
    started = time.monotonic()
    states: dict[str, TableState] = {}
    topics: list[str] = []
    while not stopping():
        if has_patterns(config):
            topics = _topics_or(topics, config)
        for table in maintained_tables(config, topics):
            if stopping():
                break
            state = states.setdefault(table.identifier, TableState(started, started))
            try:
                if not catalog.table_exists(table.identifier):  # a dead-letter table before its first letter
                    continue
                run_pass(catalog, table, state, settings, time.monotonic())
            except Exception as exc:
                log.warning("maintenance.failed", table=table.identifier, loop=name,
                            error=f"{type(exc).__name__}: {exc}")
        deadline = time.monotonic() + settings.check_interval_seconds
        while time.monotonic() < deadline and not stopping():
            time.sleep(min(0.5, settings.check_interval_seconds))


def _topics_or(known: list[str], config: Config) -> list[str]:
    """The broker's topics now; the last known list while the broker cannot answer."""
    from tabletopic.kafka.reader import topic_names

    try:
        return topic_names(config.kafka)
    except Exception as exc:
        log.warning("maintenance.topics_unavailable", error=f"{type(exc).__name__}: {exc}")
        return known
