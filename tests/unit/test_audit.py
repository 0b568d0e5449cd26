import numpy as np

from tabletopic.audit import compare_partition
from tabletopic.kafka.reader import PartitionLog

LOG = PartitionLog(0, 10, list(range(10)))


def arr(*values):
    return np.array(values, dtype=np.int64)


def test_table_and_dead_letters_together_hold_each_offset_once():
    report = compare_partition(0, LOG, 8, arr(0, 1, 3, 4, 6, 7), arr(2, 5, 8), dead_letters_committed=9)
    assert report.ok and report.dead_letters == 2  # 8 is ahead of the table: counted once the table gets there


def test_a_dead_letter_also_in_the_table_is_a_duplicate_and_a_gap_in_both_is_a_loss():
    report = compare_partition(0, LOG, 8, arr(0, 1, 2, 3, 4, 6, 7), arr(2), dead_letters_committed=8)
    assert report.duplicated == [2] and report.missing == [5]


def test_a_dead_letter_past_its_own_committed_offset_is_an_error():
    report = compare_partition(0, LOG, 4, arr(0, 1, 2, 3), arr(9), dead_letters_committed=5)
    assert report.beyond_committed == [9]
