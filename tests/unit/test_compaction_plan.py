from tabletopic.compaction.plan import (
    DeleteInfo,
    FileInfo,
    SnapshotInfo,
    bin_pack,
    deletes_touching,
    keys_to_carry,
    snapshots_to_expire,
)

MB = 1 << 20


def test_small_files_are_packed_per_partition_and_big_ones_left_alone():
    files = [FileInfo(f"a{i}", "p1", 10 * MB) for i in range(7)] + [FileInfo("big", "p1", 90 * MB)]
    files += [FileInfo(f"b{i}", "p2", 30 * MB) for i in range(3)] + [FileInfo("lonely", "p3", MB)]
    groups = bin_pack(files, target_bytes=100 * MB, min_files=2)
    as_paths = sorted(sorted(f.path for f in g) for g in groups)
    assert as_paths == [[f"a{i}" for i in range(7)], ["b0", "b1", "b2"]]
    assert all(sum(f.size_bytes for f in g) <= 100 * MB for g in groups)
    assert bin_pack(files, target_bytes=25 * MB, min_files=2) == [
        [FileInfo("a0", "p1", 10 * MB), FileInfo("a1", "p1", 10 * MB)],
        [FileInfo("a2", "p1", 10 * MB), FileInfo("a3", "p1", 10 * MB)],
        [FileInfo("a4", "p1", 10 * MB), FileInfo("a5", "p1", 10 * MB)],
    ]


def snap(i, parent, ts, *keys):
    return SnapshotInfo(i, parent, ts, frozenset(keys))


def test_expiry_keeps_the_chain_back_to_the_newest_offsets_of_every_group():
    # 1 <- 2 <- 3 <- 4(compaction) <- 5(spark) ; group a last wrote 3, group b wrote 1
    snapshots = [snap(1, None, 100, "b"), snap(2, 1, 200, "a"), snap(3, 2, 300, "a"), snap(4, 3, 400),
                 snap(5, 4, 500)]
    assert snapshots_to_expire(snapshots, 5, older_than_ms=1000, keep_last=1) == []  # b's is the oldest
    no_b = [snap(1, None, 100), *snapshots[1:]]
    assert snapshots_to_expire(no_b, 5, older_than_ms=1000, keep_last=1) == [1, 2]
    assert snapshots_to_expire(no_b, 5, older_than_ms=250, keep_last=1) == [1, 2]
    assert snapshots_to_expire(no_b, 5, older_than_ms=150, keep_last=1) == [1]
    assert snapshots_to_expire(no_b, 5, older_than_ms=1000, keep_last=4) == [1]



def test_an_old_carrier_of_a_key_is_carried_forward_instead_of_pinning_later_history():
    # 1(backfill) <- 2(a) <- ... <- 9(a) <- 10(compaction): the backfill's key alone pinned 1..10.
    snapshots = [snap(1, None, 100, "backfill"), *(snap(i, i - 1, i * 100, "a") for i in range(2, 10)),
                 snap(10, 9, 1000)]
    assert keys_to_carry(snapshots, 10, older_than_ms=2000, keep_last=1) == {"a": 9, "backfill": 1}
    assert keys_to_carry(snapshots, 10, older_than_ms=2000, keep_last=3) == {"backfill": 1}  # a's is kept anyway
    assert keys_to_carry(snapshots, 10, older_than_ms=150, keep_last=1) == {"backfill": 1}  # a's are too young
    assert keys_to_carry(snapshots, 10, older_than_ms=50, keep_last=1) == {}
    # Once carried (11 repeats both maps), everything old goes but the newest.
    carried = [*snapshots, snap(11, 10, 1100, "a", "backfill")]
    assert keys_to_carry(carried, 11, older_than_ms=2000, keep_last=1) == {}
    assert snapshots_to_expire(carried, 11, older_than_ms=2000, keep_last=1) == list(range(1, 11))


def test_tagged_and_branch_head_snapshots_are_never_expired():
    snapshots = [snap(1, None, 100, "a"), snap(2, 1, 200, "a"), snap(3, 2, 300, "a")]
    assert snapshots_to_expire(snapshots, 3, older_than_ms=1000, keep_last=1) == [1, 2]
    assert snapshots_to_expire(snapshots, 3, older_than_ms=1000, keep_last=1, protected={1}) == [2]


def test_a_delete_touches_the_file_it_names_or_else_any_replaced_file_of_its_scope():
    replaced = [FileInfo("d1", (0, "p=1"), MB), FileInfo("d2", (0, "p=1"), MB)]
    deletes = [
        DeleteInfo("pos-d1", (0, "p=1"), referenced_path="d1"),
        DeleteInfo("pos-other", (0, "p=1"), referenced_path="d9"),  # names a file the rewrite keeps
        DeleteInfo("pos-scoped", (0, "p=1")),
        DeleteInfo("eq-elsewhere", (0, "p=2")),
        DeleteInfo("eq-global", None),
    ]
    assert deletes_touching(deletes, replaced) == ["pos-d1", "pos-scoped", "eq-global"]
    assert deletes_touching(deletes[1:2] + deletes[3:4], replaced) == []
