from tabletopic.compaction.plan import FileInfo, SnapshotInfo, bin_pack, snapshots_to_expire

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
