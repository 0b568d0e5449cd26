"""The catalog side of a swap: the freeze that stops the live writers, the journal that lets a killed swap
be completed, the renames, and the lease that refuses a second rebuild of the same table.

A swap (cutover or rollback) in steps, each safe to die after:
1. Freeze the outgoing table (and its dead-letter table): an empty snapshot with the freeze property,
   so a writer's append that loaded the table before fails and, reloading, finds the freeze. The
   freeze lapses by itself: a swap killed here leaves the old table live.
2. (cutover) The rebuild reads up to the frozen offsets and commits.
3. Stamp the incoming table: its projection, a freeze of its own, and the journal of the renames.
   From here a rerun completes the swap (`complete`).
4. The renames, each skipped when already done (tables are told apart by uuid).
5. Lift the freezes and mark the journal done.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from tabletopic.catalog.projection import FREEZE_SUMMARY_KEY, FROZEN_KEY, JOURNAL_KEY, PROJECTION_KEY, encode_freeze
from tabletopic.catalog.tables import create_table, load_if_exists
from tabletopic.commit.committer import for_our_commit, table_offsets
from tabletopic.commit.offsets import OffsetMap
from tabletopic.commit.state_keys import over_state
from tabletopic.core import failpoints
from tabletopic.deadletter import rows as dead_letter
from tabletopic.exceptions import CommitError, TabletopicError
from tabletopic.rebuild.plan import Journal, Move, dlq_name

log = structlog.get_logger(__name__)

LEASE_KEY = "tabletopic.rebuild.lease"  # on the live table: {"owner": ..., "until": epoch seconds}
ATTEMPTS = 20


class SwapRefused(TabletopicError):
    """A swap or rebuild that cannot go on as asked (the reason says what to do)."""


def set_properties(catalog: Catalog, identifier: str, updates: Mapping[str, str],
                   removals: Iterable[str] = ()) -> Table:
    """Set and remove table properties, retried over concurrent commits (a properties update moves no
    snapshot, but a catalog may still refuse it when another commit landed first)."""
    for attempt in range(1, ATTEMPTS + 1):
        table = catalog.load_table(identifier)
        transaction = table.transaction()
        if updates:
            transaction.set_properties(dict(updates))
        present = [key for key in removals if key in table.metadata.properties]
        if present:
            transaction.remove_properties(*present)
        if not updates and not present:
            return table
        try:
            return transaction.commit_transaction()
        except CommitFailedException:
            time.sleep(min(1.0, 0.05 * attempt))
    raise CommitError(f"{identifier}: properties not set after {ATTEMPTS} attempts")


def freeze(catalog: Catalog, identifier: str, group: str, cutover: str, until: float) -> OffsetMap:
    """Freeze a live table: its offsets at the freeze, which no live writer's commit can pass."""
    for attempt in range(1, ATTEMPTS + 1):
        table = catalog.load_table(identifier)
        offsets = table_offsets(table, group)
        transaction = for_our_commit(table).transaction()
        transaction.set_properties({FROZEN_KEY: encode_freeze(cutover, until)})
        frozen = over_state(table, {FREEZE_SUMMARY_KEY: cutover})
        with transaction.update_snapshot(snapshot_properties=frozen).fast_append():
            pass  # an empty snapshot: a writer's append based on the snapshot before it fails
        try:
            transaction.commit_transaction()
        except CommitFailedException:
            time.sleep(min(1.0, 0.05 * attempt))
            continue
        log.info("cutover.frozen", table=identifier, cutover=cutover, until=until,
                 offsets={f"{t}/{p}": n for (t, p), n in offsets.items()})
        return offsets
    raise CommitError(f"{identifier}: could not freeze it after {ATTEMPTS} attempts")


def freeze_dead_letters(catalog: Catalog, table: str, group: str, cutover: str, until: float) -> None:
    """Freeze the table's dead-letter table, made first if it has none: a writer never creates one while
    the swap is under way (a table created then would stand where the incoming one's goes)."""
    identifier = dlq_name(table)
    if load_if_exists(catalog, identifier) is None:
        make_dead_letter_table(catalog, identifier, catalog.load_table(table))
    freeze(catalog, identifier, group, cutover, until)


def make_dead_letter_table(catalog: Catalog, identifier: str, beside: Table) -> Table:
    """An empty dead-letter table in a folder of its own beside `beside`'s."""
    return create_table(catalog, identifier, dead_letter.SCHEMA, [], {}, location=unique_location(beside, identifier))


def unique_location(beside: Table, identifier: str) -> str:
    """A folder for a new table next to `beside`'s, named after it and never used before. A renamed table
    keeps its folder, and catalogs put a new table in the folder its name gives: after a swap, a new table
    under a reused name would share a folder with another table, whose files orphan removal would then
    take for its own."""
    parent = beside.location().rstrip("/").rsplit("/", 1)[0]
    return f"{parent}/{identifier.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:8]}"


def unfreeze(catalog: Catalog, identifier: str, cutover: str) -> None:
    """Lift this cutover's freeze (another cutover's is left alone)."""
    table = load_if_exists(catalog, identifier)
    if table is None:
        return
    text = table.metadata.properties.get(FROZEN_KEY)
    if text and json.loads(text).get("by") == cutover:
        set_properties(catalog, identifier, {}, [FROZEN_KEY])


def stamp(catalog: Catalog, identifier: str, projection: str, journal: Journal, until: float) -> None:
    """Step 3: the incoming table's projection, its own freeze and the journal, in one update."""
    set_properties(catalog, identifier, {PROJECTION_KEY: projection, JOURNAL_KEY: journal.encode(),
                                         FROZEN_KEY: encode_freeze(journal.cutover, until)})


def apply_moves(catalog: Catalog, moves: Iterable[Move]) -> None:
    """Each rename unless done already; a table found at neither name, or a stranger at the target, stops it.
    A table already where the swap ends it skips its moves (a rollback parks one table, then moves it on)."""
    moves = list(moves)
    final = {move.uuid: move.target for move in moves}
    for move in moves:
        at_end = load_if_exists(catalog, final[move.uuid])
        if at_end is not None and str(at_end.metadata.table_uuid) == move.uuid:
            continue
        at_target = load_if_exists(catalog, move.target)
        if at_target is not None and str(at_target.metadata.table_uuid) == move.uuid:
            continue
        if at_target is not None:
            raise SwapRefused(f"{move.target} exists and is not the table the swap moves there "
                              f"(uuid {at_target.metadata.table_uuid}, expected {move.uuid}); move it away, then "
                              f"run the same command again")
        at_source = load_if_exists(catalog, move.source)
        if at_source is None or str(at_source.metadata.table_uuid) != move.uuid:
            raise SwapRefused(f"the table {move.uuid} is neither at {move.source} nor at {move.target}: renamed by "
                              f"someone else during the swap")
        catalog.rename_table(move.source, move.target)
        log.info("cutover.renamed", source=move.source, target=move.target)
        failpoints.reached("cutover.renamed")


def finish(catalog: Catalog, table: str, outgoing_to: str, journal: Journal) -> None:
    """Step 5: the freezes lifted from all four tables, the journal marked done."""
    done = Journal(journal.cutover, journal.moves, journal.frozen_at, done=True)
    set_properties(catalog, table, {JOURNAL_KEY: done.encode()}, [FROZEN_KEY])
    for identifier in (dlq_name(table), outgoing_to, dlq_name(outgoing_to)):
        unfreeze(catalog, identifier, journal.cutover)


def renamed_any(catalog: Catalog, journal: Journal) -> bool:
    """Whether a journaled swap has made its first rename."""
    first = journal.moves[0]
    outgoing = load_if_exists(catalog, first.source)
    return outgoing is None or str(outgoing.metadata.table_uuid) != first.uuid


def drop_journal(catalog: Catalog, table: str, holder: str, journal: Journal) -> None:
    """Give up a journaled swap that has renamed nothing: its journal, stamp and freezes go."""
    set_properties(catalog, holder, {}, [JOURNAL_KEY, FROZEN_KEY, PROJECTION_KEY])
    for name in (table, dlq_name(table)):
        unfreeze(catalog, name, journal.cutover)


def pending_journal(catalog: Catalog, names: Iterable[str]) -> tuple[str, Journal] | None:
    """A swap begun and not finished: the table carrying its journal, and the journal."""
    for name in names:
        found = load_if_exists(catalog, name)
        text = found.metadata.properties.get(JOURNAL_KEY) if found is not None else None
        if text:
            journal = Journal.decode(text)
            if not journal.done:
                return name, journal
    return None


def uuids(catalog: Catalog, names: Iterable[str]) -> dict[str, str]:
    found = {}
    for name in names:
        table = load_if_exists(catalog, name)
        if table is not None:
            found[name] = str(table.metadata.table_uuid)
    return found


def take_lease(catalog: Catalog, live: str, owner: str, ttl_s: float) -> None:
    """Hold the live table's rebuild lease (renewed by calling again): a second rebuild of the table while
    it is held is refused. A lease lapses after `ttl_s`, or at once when its holder ran on this host and
    is gone (a killed rebuild resumed here). Two rebuilds started in the same instant may both run until
    the next renewal; the offsets protocol keeps even that from doubling a record."""
    holder = lease_holder(catalog.load_table(live))
    if holder is not None and holder["owner"] != owner:
        raise SwapRefused(f"a rebuild of {live} is running ({holder['owner']} on {holder.get('host')}, its lease "
                          f"runs until {time.strftime('%H:%M:%S', time.localtime(float(holder['until'])))}); two "
                          f"at once are refused")
    set_properties(catalog, live, {LEASE_KEY: json.dumps({"owner": owner, "host": socket.gethostname(),
                                                          "pid": os.getpid(), "until": time.time() + ttl_s})})


def lease_holder(table: Table) -> dict[str, Any] | None:
    """The table's rebuild lease while it holds: not lapsed, and not of a process on this host that is gone."""
    text = table.metadata.properties.get(LEASE_KEY)
    if not text:
        return None
    lease: dict[str, Any] = json.loads(text)
    return lease if float(lease["until"]) > time.time() and _alive(lease) else None


def _alive(lease: Mapping[str, Any]) -> bool:
    """Whether a lease's holder may still run: unknown for another host, looked up for this one."""
    if lease.get("host") != socket.gethostname() or not isinstance(lease.get("pid"), int):
        return True
    try:
        os.kill(int(lease["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_lease(catalog: Catalog, live: str, owner: str) -> None:
    table = load_if_exists(catalog, live)
    text = table.metadata.properties.get(LEASE_KEY) if table is not None else None
    if text and json.loads(text)["owner"] == owner:
        set_properties(catalog, live, {}, [LEASE_KEY])
