"""The partition gate: a partition is paused while any reason covers it, resumed when none does."""

from tabletopic.commit.gate import MEMORY, PartitionGate, halted, held

A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)


def test_a_reason_pauses_what_it_covers_once_and_lifting_it_resumes_them():
    gate = PartitionGate()
    assert gate.assign([A0, A1, B0]) == []
    assert gate.close(held("t"), ["a"]) == [A0, A1]
    assert gate.close(held("t"), ["a"]) == []  # standing already
    assert gate.open(held("t")) == [A0, A1]
    assert gate.paused == []


def test_a_partition_resumes_only_when_its_last_reason_goes():
    gate = PartitionGate()
    gate.assign([A0, B0])
    assert gate.close(MEMORY) == [A0, B0]
    assert gate.close(halted("t"), ["a"]) == []  # paused already
    assert gate.open(MEMORY) == [B0]  # a is still halted
    assert gate.is_paused(A0) and gate.reasons(A0) == {halted("t")}
    assert gate.open(halted("t")) == [A0]


def test_partitions_assigned_while_memory_is_paused_are_paused_at_once():
    gate = PartitionGate()
    gate.assign([A0])
    gate.close(MEMORY)
    assert gate.assign([A1, B0]) == [A1, B0]
    assert gate.open(MEMORY) == [A0, A1, B0]


def test_a_partition_assigned_under_memory_and_a_hold_resumes_once_both_are_lifted():
    # The case: assigned while paused for memory and its table held; lifted in either order.
    for first, second in ((MEMORY, held("t")), (held("t"), MEMORY)):
        gate = PartitionGate()
        gate.assign([B0])
        gate.close(MEMORY)
        gate.close(held("t"), ["a"])
        assert gate.assign([A0]) == [A0]
        assert gate.reasons(A0) == {MEMORY, held("t")}
        assert A0 not in gate.open(first)
        assert A0 in gate.open(second)
        assert gate.paused == []


def test_revoked_partitions_are_forgotten_and_standing_reasons_apply_when_they_come_back():
    gate = PartitionGate()
    gate.assign([A0, B0])
    gate.close(halted("t"), ["a"])
    gate.release([A0])
    assert gate.paused == []  # b is not covered
    assert gate.assign([A0]) == [A0]
    gate.release([A0, B0])
    assert gate.open(halted("t")) == []


def test_a_standing_reason_widens_to_a_topic_its_table_gained():
    gate = PartitionGate()
    gate.assign([A0, B0])
    gate.close(held("t"), ["a"])
    assert gate.close(held("t"), ["b"]) == [B0]
    assert gate.reasons(A0) == gate.reasons(B0) == {held("t")}
    assert gate.open(held("t")) == [A0, B0]


def test_lifting_a_reason_that_does_not_stand_changes_nothing():
    gate = PartitionGate()
    gate.assign([A0])
    gate.close(MEMORY)
    assert gate.open(held("t")) == []
    assert gate.paused == [A0]
