from tabletopic.commit.pressure import should_pause, should_resume, table_backoff, tables_to_flush_early


def test_flush_the_largest_tables_until_under_the_cap():
    sizes = {"a": 10, "b": 50, "c": 30, "d": 0}
    assert tables_to_flush_early(sizes, cap=100, blocked=set()) == []
    assert tables_to_flush_early(sizes, cap=60, blocked=set()) == ["b"]
    assert tables_to_flush_early(sizes, cap=20, blocked=set()) == ["b", "c"]
    assert tables_to_flush_early(sizes, cap=20, blocked={"b"}) == ["c", "a"]


def test_pause_at_the_cap_and_resume_below_half():
    assert should_pause(100, 100) and not should_pause(99, 100)
    assert not should_resume(50, 100) and should_resume(49, 100)


def test_a_failing_table_backs_off_longer_and_longer_up_to_a_minute():
    assert [table_backoff(n) for n in (1, 2, 3, 7, 100)] == [1.0, 2.0, 4.0, 60.0, 60.0]
