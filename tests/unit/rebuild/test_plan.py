"""The pure decisions of a rebuild (tabletopic/rebuild/plan.py): the renames of a swap, the journal, when the
rebuild has caught up and the estimated time to catch up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tabletopic.rebuild.plan import (
    Journal,
    Move,
    behind,
    caught_up,
    dlq_name,
    eta_seconds,
    offsets_from_text,
    offsets_text,
    previous_name,
    rebuild_name,
    swap_moves,
)

T = "ns.t"


def test_the_names_of_a_rebuild() -> None:
    assert rebuild_name(T) == "ns.t__rebuild"
    assert previous_name(T) == "ns.t__previous"
    assert dlq_name(rebuild_name(T)) == "ns.t__rebuild__dlq"


def test_a_cutover_moves_the_live_table_aside_then_the_rebuilt_one_in_then_their_dead_letters() -> None:
    uuids = {T: "live", rebuild_name(T): "new", dlq_name(T): "live-dlq", dlq_name(rebuild_name(T)): "new-dlq"}
    assert swap_moves(T, rebuild_name(T), previous_name(T), uuids) == (
        Move("ns.t", "ns.t__previous", "live"),
        Move("ns.t__rebuild", "ns.t", "new"),
        Move("ns.t__dlq", "ns.t__previous__dlq", "live-dlq"),
        Move("ns.t__rebuild__dlq", "ns.t__dlq", "new-dlq"),
    )


def test_a_cutover_without_dead_letter_tables_moves_the_data_tables_only() -> None:
    uuids = {T: "live", rebuild_name(T): "new"}
    assert swap_moves(T, rebuild_name(T), previous_name(T), uuids) == (
        Move("ns.t", "ns.t__previous", "live"), Move("ns.t__rebuild", "ns.t", "new"))


def test_a_cutover_where_only_the_live_table_has_dead_letters_moves_them_aside() -> None:
    uuids = {T: "live", rebuild_name(T): "new", dlq_name(T): "live-dlq"}
    assert swap_moves(T, rebuild_name(T), previous_name(T), uuids)[2:] == (
        Move("ns.t__dlq", "ns.t__previous__dlq", "live-dlq"),)


def test_a_rollback_parks_the_current_table_under_swap_while_the_previous_one_comes_back() -> None:
    uuids = {T: "cur", previous_name(T): "prev", dlq_name(T): "cur-dlq", dlq_name(previous_name(T)): "prev-dlq"}
    assert swap_moves(T, previous_name(T), previous_name(T), uuids) == (
        Move("ns.t", "ns.t__swap", "cur"),
        Move("ns.t__previous", "ns.t", "prev"),
        Move("ns.t__swap", "ns.t__previous", "cur"),
        Move("ns.t__dlq", "ns.t__swap__dlq", "cur-dlq"),
        Move("ns.t__previous__dlq", "ns.t__dlq", "prev-dlq"),
        Move("ns.t__swap__dlq", "ns.t__previous__dlq", "cur-dlq"),
    )


def test_a_rollback_without_dead_letter_tables_moves_the_data_tables_only() -> None:
    uuids = {T: "cur", previous_name(T): "prev"}
    assert swap_moves(T, previous_name(T), previous_name(T), uuids) == (
        Move("ns.t", "ns.t__swap", "cur"), Move("ns.t__previous", "ns.t", "prev"),
        Move("ns.t__swap", "ns.t__previous", "cur"))


def test_a_rollback_where_only_the_current_table_has_dead_letters_parks_them_then_moves_them_aside() -> None:
    uuids = {T: "cur", previous_name(T): "prev", dlq_name(T): "cur-dlq"}
    assert swap_moves(T, previous_name(T), previous_name(T), uuids)[3:] == (
        Move("ns.t__dlq", "ns.t__swap__dlq", "cur-dlq"), Move("ns.t__swap__dlq", "ns.t__previous__dlq", "cur-dlq"))


def test_no_target_is_taken_twice_at_any_step_of_a_swap() -> None:
    """Replaying the moves on a map of names: each rename finds its source and a free target."""
    for incoming, outgoing_to, uuids in [
        (rebuild_name(T), previous_name(T), {T: "a", rebuild_name(T): "b", dlq_name(T): "c",
                                             dlq_name(rebuild_name(T)): "d"}),
        (previous_name(T), previous_name(T), {T: "a", previous_name(T): "b", dlq_name(T): "c",
                                              dlq_name(previous_name(T)): "d"}),
    ]:
        names = dict(uuids)
        for move in swap_moves(T, incoming, outgoing_to, uuids):
            assert names.get(move.source) == move.uuid and move.target not in names
            names[move.target] = names.pop(move.source)
        assert names[T] == uuids[incoming] and names[outgoing_to] == uuids[T]


names = st.text(max_size=20)
moves = st.builds(Move, names, names, names)


@given(cutover=names, moves=st.lists(moves, max_size=6).map(tuple),
       frozen_at=st.dictionaries(names, st.integers(min_value=0, max_value=2**63 - 1), max_size=5),
       done=st.booleans())
def test_a_journal_survives_its_encoding(cutover: str, moves: tuple[Move, ...], frozen_at: dict[str, int],
                                         done: bool) -> None:
    journal = Journal(cutover, moves, frozen_at, done)
    assert Journal.decode(journal.encode()) == journal


def test_caught_up_needs_every_partition_the_live_table_holds() -> None:
    live = {("t", 0): 10, ("t", 1): 5}
    assert caught_up({("t", 0): 10, ("t", 1): 5}, live)
    assert caught_up({("t", 0): 12, ("t", 1): 5, ("t", 2): 3}, live)  # read further, and a partition it lacks
    assert not caught_up({("t", 0): 10, ("t", 1): 4}, live)
    assert not caught_up({("t", 0): 10}, live)  # a partition not read at all
    assert caught_up({}, {})
    assert caught_up({("t", 0): 1}, {})  # the live table holds nothing yet


def test_behind_counts_what_is_left_to_read_never_less_than_nothing() -> None:
    live = {("t", 0): 10, ("t", 1): 5}
    assert behind({("t", 0): 4, ("t", 1): 5}, live) == 6
    assert behind({("t", 0): 4}, live) == 11  # a partition not read: all of it
    assert behind({("t", 0): 20, ("t", 1): 0}, live) == 5  # read past one partition: no credit for the other
    assert behind({("t", 9): 7}, {}) == 0
    assert behind({}, {}) == 0


def test_eta_is_the_gap_over_the_rate_it_closes_at() -> None:
    assert eta_seconds(100, 300, 10.0) == 5.0
    assert eta_seconds(0, 300, 10.0) == 0.0
    assert eta_seconds(0, 0, 0.0) == 0.0  # caught up: no rate needed


@pytest.mark.parametrize(("now", "before", "seconds"), [
    (100, 100, 10.0),  # the gap does not close
    (200, 100, 10.0),  # it grows
    (100, 300, 0.0),  # no time elapsed
    (100, 300, -1.0),  # a clock step back
])
def test_no_eta_while_the_gap_does_not_close(now: int, before: int, seconds: float) -> None:
    assert eta_seconds(now, before, seconds) is None


offset_maps = st.dictionaries(st.tuples(st.text(max_size=12), st.integers(min_value=0, max_value=10_000)),
                              st.integers(min_value=0, max_value=2**63 - 1), max_size=8)


@given(offset_maps)
def test_offsets_as_text_and_back(offsets: dict[tuple[str, int], int]) -> None:
    assert offsets_from_text(offsets_text(offsets)) == offsets


def test_offsets_text_with_a_slash_in_the_topic_name() -> None:
    offsets = {("a/b/c", 3): 7, ("a", 0): 1}
    assert offsets_text(offsets) == {"a/0": 1, "a/b/c/3": 7}
    assert offsets_from_text(offsets_text(offsets)) == offsets
