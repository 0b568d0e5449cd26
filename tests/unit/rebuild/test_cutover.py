"""The catalog side of a swap (tabletopic/rebuild/cutover.py) on pyiceberg's SqlCatalog (SQLite, local warehouse):
the freeze and the committers it stops, the renames and their reruns, the journal, the rebuild lease."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException

from tabletopic.catalog.projection import FREEZE_SUMMARY_KEY, FROZEN_KEY, PROJECTION_KEY, TableFrozen, active_freeze
from tabletopic.catalog.tables import create_table, load_if_exists
from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.committer import Committer, append_files, table_offsets
from tabletopic.core.backoff import RetryPolicy
from tabletopic.deadletter import rows as dead_letter
from tabletopic.rebuild import cutover
from tabletopic.rebuild.cutover import JOURNAL_KEY, LEASE_KEY, SwapRefused
from tabletopic.rebuild.plan import SWAP_SUFFIX, Journal, Move, dlq_name, previous_name, rebuild_name, swap_moves
from tabletopic.rebuild.run import complete_swap

SCHEMA = pa.schema([pa.field("o", pa.int64())])
T = "ns.t"
GROUP = "g"


def sql_catalog(folder: Path) -> SqlCatalog:
    folder.mkdir(parents=True, exist_ok=True)
    return SqlCatalog("test", uri=f"sqlite:///{folder}/catalog.db", warehouse=f"file://{folder}")


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return sql_catalog(tmp_path)


def part(first: int, last: int) -> PartitionBuffer:
    rows = pa.table({"o": pa.array(range(first, last + 1), pa.int64())})
    return PartitionBuffer(first, last, [rows], rows.nbytes)


def committer(catalog: Catalog, identifier: str = T) -> Committer:
    return Committer(catalog, identifier, GROUP, "writer", RetryPolicy(initial_backoff_s=0.001), sleep=lambda _: None)


def make(catalog: Catalog, *names: str) -> dict[str, str]:
    """Empty tables under `names` (dead-letter ones where the name says so): name -> uuid."""
    for name in names:
        create_table(catalog, name, dead_letter.SCHEMA if name.endswith("__dlq") else SCHEMA, [], {})
    return cutover.uuids(catalog, names)


def where(catalog: Catalog, names: list[str]) -> dict[str, str]:
    """Name -> uuid of the tables found under `names`."""
    return cutover.uuids(catalog, names)


# --- the freeze ------------------------------------------------------------------------------------


@pytest.fixture
def live(catalog: SqlCatalog) -> SqlCatalog:
    """ns.t holding offsets 0..9 of t/0 and 0..4 of t/1, committed by a writer."""
    create_table(catalog, T, SCHEMA, [], {})
    committer(catalog).commit({("t", 0): part(0, 9), ("t", 1): part(0, 4)})
    return catalog


def test_a_freeze_is_an_empty_snapshot_that_carries_it_and_returns_the_tables_offsets(live: SqlCatalog) -> None:
    before = live.load_table(T).current_snapshot()
    offsets = cutover.freeze(live, T, GROUP, "cut-1", time.time() + 60)
    assert offsets == {("t", 0): 10, ("t", 1): 5}
    table = live.load_table(T)
    snapshot = table.current_snapshot()
    assert before is not None and snapshot is not None and snapshot.parent_snapshot_id == before.snapshot_id
    assert snapshot.summary is not None and snapshot.summary[FREEZE_SUMMARY_KEY] == "cut-1"
    summary = dict(snapshot.summary.additional_properties)
    assert "added-data-files" not in summary and summary["total-records"] == "15"  # no row added
    assert table.scan().to_arrow().num_rows == 15
    freeze = active_freeze(table.metadata.properties, time.time())
    assert freeze is not None and freeze.by == "cut-1"
    assert table_offsets(table, GROUP) == offsets  # the empty snapshot keeps the offsets the writers go on from


def test_an_append_based_on_the_table_before_the_freeze_fails(live: SqlCatalog) -> None:
    stale = live.load_table(T)
    cutover.freeze(live, T, GROUP, "cut-1", time.time() + 60)
    with pytest.raises(CommitFailedException):
        append_files(stale, [], {"x": "y"})


def test_a_frozen_tables_committer_commits_nothing_until_the_freeze_is_lifted(live: SqlCatalog) -> None:
    writer = committer(live)
    cutover.freeze(live, T, GROUP, "cut-1", time.time() + 60)
    frozen_snapshot = live.load_table(T).current_snapshot()
    with pytest.raises(TableFrozen) as raised:
        writer.commit({("t", 0): part(10, 19)})
    assert raised.value.by == "cut-1"
    assert live.load_table(T).current_snapshot() == frozen_snapshot
    cutover.unfreeze(live, T, "another-cut")  # another cutover's lifting leaves this freeze
    with pytest.raises(TableFrozen):
        writer.commit({("t", 0): part(10, 19)})
    cutover.unfreeze(live, T, "cut-1")
    assert FROZEN_KEY not in live.load_table(T).metadata.properties
    assert writer.commit({("t", 0): part(10, 19)}).committed == {("t", 0): 20}
    assert table_offsets(live.load_table(T), GROUP) == {("t", 0): 20, ("t", 1): 5}


def test_a_lapsed_freeze_lets_the_committer_go_on(live: SqlCatalog) -> None:
    cutover.freeze(live, T, GROUP, "cut-1", time.time() - 1)
    assert committer(live).commit({("t", 0): part(10, 19)}).committed == {("t", 0): 20}


def test_the_dead_letter_freeze_makes_the_table_it_freezes(live: SqlCatalog) -> None:
    cutover.freeze_dead_letters(live, T, GROUP, "cut-1", time.time() + 60)
    letters = live.load_table(dlq_name(T))
    freeze = active_freeze(letters.metadata.properties, time.time())
    assert freeze is not None and freeze.by == "cut-1"
    with pytest.raises(TableFrozen):
        Committer(live, dlq_name(T), GROUP, "writer", offset_column="_kafka_offset").commit({})
    cutover.freeze_dead_letters(live, T, GROUP, "cut-2", time.time() + 60)  # found, not made again
    assert cutover.uuids(live, [dlq_name(T)]) == {dlq_name(T): str(letters.metadata.table_uuid)}


# --- the renames -----------------------------------------------------------------------------------

CUTOVER_NAMES = [T, dlq_name(T), rebuild_name(T), dlq_name(rebuild_name(T))]
ROLLBACK_NAMES = [T, dlq_name(T), previous_name(T), dlq_name(previous_name(T))]
ALL_NAMES = sorted({*CUTOVER_NAMES, *ROLLBACK_NAMES, T + SWAP_SUFFIX, dlq_name(T + SWAP_SUFFIX)})


def cutover_moves(catalog: Catalog) -> tuple[dict[str, str], tuple[Move, ...]]:
    made = make(catalog, *CUTOVER_NAMES)
    return made, swap_moves(T, rebuild_name(T), previous_name(T), made)


def rollback_moves(catalog: Catalog) -> tuple[dict[str, str], tuple[Move, ...]]:
    made = make(catalog, *ROLLBACK_NAMES)
    return made, swap_moves(T, previous_name(T), previous_name(T), made)


def test_a_cutover_puts_the_rebuilt_tables_in_place_and_the_live_ones_aside(catalog: SqlCatalog) -> None:
    made, moves = cutover_moves(catalog)
    cutover.apply_moves(catalog, moves)
    assert where(catalog, ALL_NAMES) == {
        T: made[rebuild_name(T)], dlq_name(T): made[dlq_name(rebuild_name(T))],
        previous_name(T): made[T], dlq_name(previous_name(T)): made[dlq_name(T)]}


def test_a_rollback_trades_the_places_of_the_tables_and_of_their_dead_letters(catalog: SqlCatalog) -> None:
    made, moves = rollback_moves(catalog)
    cutover.apply_moves(catalog, moves)
    assert where(catalog, ALL_NAMES) == {
        T: made[previous_name(T)], dlq_name(T): made[dlq_name(previous_name(T))],
        previous_name(T): made[T], dlq_name(previous_name(T)): made[dlq_name(T)]}


def end_state(catalog: Catalog, made: dict[str, str]) -> dict[str, str]:
    """Name -> the name the table found there was made under."""
    made_as = {uuid: name for name, uuid in made.items()}
    return {name: made_as[uuid] for name, uuid in where(catalog, ALL_NAMES).items()}


CUTOVER_END = {T: rebuild_name(T), dlq_name(T): dlq_name(rebuild_name(T)), previous_name(T): T,
               dlq_name(previous_name(T)): dlq_name(T)}
ROLLBACK_END = {T: previous_name(T), dlq_name(T): dlq_name(previous_name(T)), previous_name(T): T,
                dlq_name(previous_name(T)): dlq_name(T)}


@pytest.mark.parametrize("k", range(5))
def test_a_cutover_killed_after_any_rename_is_completed_by_a_rerun(tmp_path: Path, k: int) -> None:
    catalog = sql_catalog(tmp_path)
    made, moves = cutover_moves(catalog)
    assert len(moves) == 4
    cutover.apply_moves(catalog, moves[:k])
    cutover.apply_moves(catalog, moves)
    assert end_state(catalog, made) == CUTOVER_END
    cutover.apply_moves(catalog, moves)  # and once more: nothing left to do
    assert end_state(catalog, made) == CUTOVER_END


@pytest.mark.parametrize("k", range(7))
def test_a_rollback_killed_after_any_rename_is_completed_by_a_rerun(tmp_path: Path, k: int) -> None:
    catalog = sql_catalog(tmp_path)
    made, moves = rollback_moves(catalog)
    assert len(moves) == 6
    cutover.apply_moves(catalog, moves[:k])
    cutover.apply_moves(catalog, moves)
    assert end_state(catalog, made) == ROLLBACK_END


def test_a_stranger_at_a_target_stops_the_swap_before_any_rename(catalog: SqlCatalog) -> None:
    made, moves = cutover_moves(catalog)
    stranger = make(catalog, previous_name(T))[previous_name(T)]  # left by an earlier cutover, say
    with pytest.raises(SwapRefused, match="exists and is not the table"):
        cutover.apply_moves(catalog, moves)
    assert where(catalog, ALL_NAMES) == {**made, previous_name(T): stranger}


def test_a_table_found_at_neither_name_stops_the_swap(catalog: SqlCatalog) -> None:
    made, moves = cutover_moves(catalog)
    catalog.rename_table(rebuild_name(T), "ns.elsewhere")  # someone else renamed it meanwhile
    with pytest.raises(SwapRefused, match="neither at"):
        cutover.apply_moves(catalog, moves)
    assert where(catalog, ALL_NAMES) == {previous_name(T): made[T], dlq_name(T): made[dlq_name(T)],
                                         dlq_name(rebuild_name(T)): made[dlq_name(rebuild_name(T))]}
    with pytest.raises(SwapRefused, match="neither at"):
        cutover.apply_moves(catalog, [Move("ns.gone", "ns.x", "no-such-uuid")])


# --- the journal -----------------------------------------------------------------------------------


def test_a_swap_journaled_on_the_incoming_table_is_found_until_it_is_finished(live: SqlCatalog) -> None:
    names = [T, rebuild_name(T), previous_name(T), T + SWAP_SUFFIX]
    create_table(live, rebuild_name(T), SCHEMA, [], {})
    assert cutover.pending_journal(live, names) is None
    until = time.time() + 60
    cutover.freeze_dead_letters(live, T, GROUP, "cut-1", until)
    frozen_at = cutover.freeze(live, T, GROUP, "cut-1", until)
    moves = swap_moves(T, rebuild_name(T), previous_name(T), cutover.uuids(live, CUTOVER_NAMES))
    journal = Journal("cut-1", moves, {f"{t}/{p}": n for (t, p), n in frozen_at.items()})
    cutover.stamp(live, rebuild_name(T), '{"hash": "h", "settings": {}}', journal, until)
    assert cutover.pending_journal(live, names) == (rebuild_name(T), journal)
    cutover.apply_moves(live, moves[:1])  # killed after the first rename: ns.t is nowhere, the journal still found
    assert cutover.pending_journal(live, names) == (rebuild_name(T), journal)
    cutover.apply_moves(live, moves)
    assert cutover.pending_journal(live, names) == (T, journal)  # it moved with its table

    cutover.finish(live, T, previous_name(T), journal)
    assert cutover.pending_journal(live, names) is None
    for name in (T, dlq_name(T), previous_name(T), dlq_name(previous_name(T))):
        properties = live.load_table(name).metadata.properties if load_if_exists(live, name) else {}
        assert FROZEN_KEY not in properties, name
    properties = live.load_table(T).metadata.properties
    assert Journal.decode(properties[JOURNAL_KEY]).done and properties[PROJECTION_KEY]
    assert Journal.decode(properties[JOURNAL_KEY]).moves == moves


def test_finish_leaves_another_cutovers_freeze_of_the_old_tables(live: SqlCatalog) -> None:
    create_table(live, rebuild_name(T), SCHEMA, [], {})
    moves = swap_moves(T, rebuild_name(T), previous_name(T), cutover.uuids(live, CUTOVER_NAMES))
    journal = Journal("cut-1", moves, {})
    cutover.stamp(live, rebuild_name(T), "{}", journal, time.time() + 60)
    cutover.apply_moves(live, moves)
    cutover.freeze(live, previous_name(T), GROUP, "cut-2", time.time() + 60)
    cutover.finish(live, T, previous_name(T), journal)
    freeze = active_freeze(live.load_table(previous_name(T)).metadata.properties, time.time())
    assert freeze is not None and freeze.by == "cut-2"


# --- the lease -------------------------------------------------------------------------------------


def lease(owner: str, until: float, host: str | None = None, pid: int | None = None) -> dict[str, str]:
    return {LEASE_KEY: json.dumps({"owner": owner, "host": host or socket.gethostname(),
                                   "pid": pid if pid is not None else 1, "until": until})}


def holder(catalog: Catalog) -> str:
    return str(json.loads(catalog.load_table(T).metadata.properties[LEASE_KEY])["owner"])


def gone_pid() -> int:
    """A pid no process has: pids stay below the kernel's pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text())


def test_a_live_lease_of_another_rebuild_is_refused_and_its_own_is_renewed(live: SqlCatalog) -> None:
    cutover.take_lease(live, T, "first", ttl_s=60)
    with pytest.raises(SwapRefused, match="first"):
        cutover.take_lease(live, T, "second", ttl_s=60)
    assert holder(live) == "first"
    cutover.take_lease(live, T, "first", ttl_s=60)  # a renewal
    assert holder(live) == "first"


def test_a_lapsed_lease_is_taken(live: SqlCatalog) -> None:
    cutover.set_properties(live, T, lease("first", until=time.time() - 1))
    cutover.take_lease(live, T, "second", ttl_s=60)
    assert holder(live) == "second"


def test_a_lease_of_a_gone_process_on_this_host_is_taken_at_once(live: SqlCatalog) -> None:
    cutover.set_properties(live, T, lease("killed", until=time.time() + 600, pid=gone_pid()))
    cutover.take_lease(live, T, "resumed", ttl_s=60)
    assert holder(live) == "resumed"


def test_a_lease_of_another_host_or_of_a_running_process_holds(live: SqlCatalog) -> None:
    cutover.set_properties(live, T, lease("elsewhere", until=time.time() + 600, host="another-host", pid=gone_pid()))
    with pytest.raises(SwapRefused):
        cutover.take_lease(live, T, "second", ttl_s=60)
    cutover.set_properties(live, T, lease("running", until=time.time() + 600, pid=1))  # init never goes
    with pytest.raises(SwapRefused):
        cutover.take_lease(live, T, "second", ttl_s=60)


def test_a_lease_is_dropped_by_its_owner_only(live: SqlCatalog) -> None:
    cutover.take_lease(live, T, "first", ttl_s=60)
    cutover.drop_lease(live, T, "second")
    assert holder(live) == "first"
    cutover.drop_lease(live, T, "first")
    assert LEASE_KEY not in live.load_table(T).metadata.properties
    cutover.drop_lease(live, "ns.none", "first")  # no table: nothing to drop


def test_a_rollback_killed_after_its_renames_is_completed_by_the_next_run(live: SqlCatalog) -> None:
    """`tabletopic rebuild --rollback` killed between its last rename and `finish`: the next run finds the journal
    and completes the swap (run.complete_swap)."""
    create_table(live, previous_name(T), SCHEMA, [], {})
    committer(live, previous_name(T)).commit({("t", 0): part(0, 7)})
    made = cutover.uuids(live, [T, previous_name(T)])
    until = time.time() + 60
    frozen_at = cutover.freeze(live, T, GROUP, "cut-1", until)
    moves = swap_moves(T, previous_name(T), previous_name(T), made)
    journal = Journal("cut-1", moves, {f"{t}/{p}": n for (t, p), n in frozen_at.items()})
    cutover.stamp(live, previous_name(T), "{}", journal, until)
    cutover.apply_moves(live, moves)
    pending = cutover.pending_journal(live, [T, previous_name(T), T + SWAP_SUFFIX])
    assert pending == (T, journal)
    assert complete_swap(live, GROUP, T, *pending, freeze_seconds=60)
    assert where(live, ALL_NAMES) == {T: made[previous_name(T)], previous_name(T): made[T]}
    assert cutover.pending_journal(live, [T, previous_name(T), T + SWAP_SUFFIX]) is None
