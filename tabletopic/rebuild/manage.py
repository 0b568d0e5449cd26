"""`tabletopic rebuild --rollback | --drop-previous | --abandon | --show`: what follows a cutover."""

from __future__ import annotations

import time
import uuid

import structlog
import yaml
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog.projection import PROJECTION_HASH_KEY, encode_projection, hash_of, recorded_projection
from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit.committer import snapshot_summaries
from tabletopic.config import Config, TableConfig
from tabletopic.rebuild import cutover
from tabletopic.rebuild.cutover import SwapRefused
from tabletopic.rebuild.plan import (
    SWAP_SUFFIX,
    Journal,
    dlq_name,
    offsets_text,
    previous_name,
    rebuild_name,
    swap_moves,
)
from tabletopic.rebuild.run import complete_swap, live_spec

log = structlog.get_logger(__name__)

ROLLBACK_LEASE_S = 300.0


def _names(table: str) -> list[str]:
    return [table, rebuild_name(table), previous_name(table), table + SWAP_SUFFIX]


def rollback(catalog: Catalog, config: Config, table: str, freeze_seconds: float) -> str:
    """Swap `table` and `table__previous` back, the live writers going on in the previous version from the
    offsets it was frozen at. `config` is the one the previous version was written under: the restored table
    records it, and the writers adopt it."""
    spec = live_spec(config, table)
    pending = cutover.pending_journal(catalog, _names(table))
    if pending is not None and complete_swap(catalog, config.group_id, table, *pending, freeze_seconds):
        return f"completed the swap {pending[1].cutover} a killed run began"
    previous = load_if_exists(catalog, previous_name(table))
    if previous is None:
        raise SwapRefused(f"{previous_name(table)} does not exist: there is no previous version to go back to")
    if load_if_exists(catalog, table) is None:
        raise SwapRefused(f"{table} does not exist")
    _check_written_under(previous, spec)
    owner = f"rollback-{uuid.uuid4().hex[:8]}"
    cutover.take_lease(catalog, table, owner, ROLLBACK_LEASE_S)  # not while a rebuild of the table runs
    try:
        return _swap_back(catalog, config, spec, table, freeze_seconds)
    finally:
        for name in (table, previous_name(table)):
            cutover.drop_lease(catalog, name, owner)


def _swap_back(catalog: Catalog, config: Config, spec: TableConfig, table: str, freeze_seconds: float) -> str:
    cut = uuid.uuid4().hex[:12]
    until = time.time() + freeze_seconds
    cutover.freeze_dead_letters(catalog, table, config.group_id, cut, until)
    frozen_at = cutover.freeze(catalog, table, config.group_id, cut, until)
    moves = swap_moves(table, previous_name(table), previous_name(table), cutover.uuids(catalog, [
        table, dlq_name(table), previous_name(table), dlq_name(previous_name(table))]))
    journal = Journal(cut, moves, offsets_text(frozen_at))
    cutover.stamp(catalog, previous_name(table), encode_projection(spec), journal, until)
    cutover.apply_moves(catalog, moves)
    cutover.finish(catalog, table, previous_name(table), journal)
    log.info("rollback.done", table=table, cutover=cut)
    return f"{table} is the previous version again; the one rolled back is {previous_name(table)}"


def _check_written_under(previous: Table, spec: TableConfig) -> None:
    """The config given must be the one the previous version's rows were made under."""
    recorded = recorded_projection(previous.metadata.properties)
    made_under = recorded.hash if recorded is not None else next(
        (s[PROJECTION_HASH_KEY] for s in snapshot_summaries(previous) if s.get(PROJECTION_HASH_KEY)), None)
    if made_under is None:
        log.warning("rollback.projection_unknown", table=previous.name(),
                    why="its commits predate recorded projections: the config given is taken as its own")
        return
    if made_under != hash_of(spec):
        raise SwapRefused(f"the previous version was written under other settings (projection {made_under}) than "
                          f"the config gives ({hash_of(spec)}): give the config it was written under")


def drop_previous(catalog: Catalog, table: str) -> str:
    if cutover.pending_journal(catalog, _names(table)) is not None:
        raise SwapRefused(f"a swap of {table} is under way: complete it first (tabletopic rebuild --table {table})")
    dropped = [name for name in (previous_name(table), dlq_name(previous_name(table))) if _purge(catalog, name)]
    if not dropped:
        raise SwapRefused(f"{previous_name(table)} does not exist")
    return f"dropped {', '.join(dropped)}"


def abandon(catalog: Catalog, table: str) -> str:
    """Drop an unfinished rebuild (another config is to be built, or none)."""
    pending = cutover.pending_journal(catalog, _names(table))
    if pending is not None and cutover.renamed_any(catalog, pending[1]):
        raise SwapRefused(f"the cutover of {table} has begun its renames: complete it (tabletopic rebuild --table "
                          f"{table}), then roll back if need be")
    if pending is not None:
        cutover.drop_journal(catalog, table, *pending)
    live = load_if_exists(catalog, table)
    holder = cutover.lease_holder(live) if live is not None else None
    if holder is not None:
        raise SwapRefused(f"a rebuild of {table} is running ({holder['owner']} on {holder.get('host')}): stop it first")
    dropped = [name for name in (rebuild_name(table), dlq_name(rebuild_name(table))) if _purge(catalog, name)]
    return f"dropped {', '.join(dropped)}" if dropped else f"there was no rebuild of {table} to drop"


def show(catalog: Catalog, table: str) -> str:
    """The projection the table records (a rebuild's), as the YAML of its settings."""
    found = load_if_exists(catalog, table)
    if found is None:
        raise SwapRefused(f"{table} does not exist")
    recorded = recorded_projection(found.metadata.properties)
    if recorded is None:
        return f"{table} records no projection (never rebuilt): its writers' config decides"
    return yaml.safe_dump({"table": table, **recorded.settings}, sort_keys=False).rstrip()


def _purge(catalog: Catalog, identifier: str) -> bool:
    if load_if_exists(catalog, identifier) is None:
        return False
    catalog.purge_table(identifier)
    return True
