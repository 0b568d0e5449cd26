"""The pure parts of the capacity benches: bench/store_requests.py's request classes, bench/commit_modes.py's
latency join and rates."""

from collections import Counter

from bench.commit_modes import commit_latencies, partitions_for, percentile, steady_rate_per_min
from bench.store_requests import client_of, difference, object_kind, operation, summarize

TABLE = "/warehouse/wh/bench/t"


def test_operations_of_path_style_requests() -> None:
    assert operation("GET", f"{TABLE}/metadata/00001-a.metadata.json", "") == "GET"
    assert operation("GET", "/warehouse", "list-type=2&prefix=wh%2F") == "LIST"
    assert operation("GET", "/warehouse/", "") == "LIST"
    assert operation("HEAD", f"{TABLE}/data/x.parquet", "") == "HEAD"
    assert operation("PUT", f"{TABLE}/data/x.parquet", "") == "PUT"
    assert operation("PUT", f"{TABLE}/data/x.parquet", "", copy_source=True) == "COPY"
    assert operation("PUT", f"{TABLE}/data/x.parquet", "partNumber=1&uploadId=u") == "PUT part"
    assert operation("POST", f"{TABLE}/data/x.parquet", "uploads") == "POST multipart start"
    assert operation("POST", f"{TABLE}/data/x.parquet", "uploadId=u") == "POST multipart complete"
    assert operation("POST", "/warehouse", "delete") == "DELETE batch"
    assert operation("DELETE", f"{TABLE}/data/x.parquet", "") == "DELETE"
    assert operation("DELETE", f"{TABLE}/data/x.parquet", "uploadId=u") == "DELETE multipart abort"


def test_object_kinds() -> None:
    assert object_kind(f"{TABLE}/metadata/00001-a.metadata.json") == "metadata.json"
    assert object_kind(f"{TABLE}/metadata/snap-1-0-a.avro") == "manifest list"
    assert object_kind(f"{TABLE}/metadata/a-m0.avro") == "manifest"
    assert object_kind(f"{TABLE}/data/00000-0-a.parquet") == "data file"
    assert object_kind("/warehouse") == "bucket"


def test_clients_by_user_agent() -> None:
    assert client_of("aws-sdk-java/2.29.6 Linux/6.18 OpenJDK_64-Bit_Server_VM/21") == "catalog"
    assert client_of("aws-sdk-cpp/1.11.485 Linux/6.18 x86_64 GCC/13") == "tabletopic"
    assert client_of("Boto3/1.40.0 md/Botocore#1.40.0") == "setup"
    assert client_of("curl/8").startswith("other")


def test_requests_per_commit_are_differences_divided() -> None:
    before = Counter({("tabletopic", "PUT part", "data file"): 3, ("catalog", "GET", "metadata.json"): 6})
    after = Counter({("tabletopic", "PUT part", "data file"): 7, ("catalog", "GET", "metadata.json"): 6,
                     ("catalog", "PUT", "metadata.json"): 4})
    summary = summarize(difference(after, before), per=4)
    assert summary["total"] == 2.0
    assert summary["by_operation"] == {"PUT": 1.0, "PUT part": 1.0}
    assert summary["by_class"] == {"A": 2.0}


def test_latency_joins_the_first_start_to_the_done_through_the_snapshot() -> None:
    events: list[dict[str, object]] = [
        {"event": "commit.started", "commit_id": "c1", "timestamp": "2026-12-01T10:00:00.000000Z"},
        {"event": "commit.conflict", "timestamp": "2026-12-01T10:00:00.100000Z"},
        {"event": "commit.started", "commit_id": "c1", "timestamp": "2026-12-01T10:00:00.300000Z"},
        {"event": "commit.started", "commit_id": "c2", "timestamp": "2026-12-01T10:00:01.000000Z"},
        {"event": "commit.done", "snapshot_id": 11, "timestamp": "2026-12-01T10:00:00.500000Z"},
        {"event": "commit.done", "snapshot_id": 12, "timestamp": "2026-12-01T10:00:01.050000Z"},
        {"event": "commit.done", "snapshot_id": 13, "timestamp": "2026-12-01T10:00:02.000000Z"},  # no start seen
    ]
    latencies = commit_latencies(events, {11: "c1", 12: "c2", 13: "c3"})
    assert [round(s, 3) for s in latencies] == [0.5, 0.05]
    assert steady_rate_per_min(events) == 2 / (1.5 / 60)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0


def test_every_worker_gets_a_partition() -> None:
    assert [partitions_for(n) for n in (1, 4, 8, 16)] == [8, 8, 8, 16]
