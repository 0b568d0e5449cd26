import pytest

from tabletopic.compaction.scheduler import SmallFiles, TableState, due
from tabletopic.config import MaintenanceConfig, load_config

SETTINGS = MaintenanceConfig(min_small_files=10, target_file_size_bytes=1000, expire_interval_seconds=60,
                             orphans_interval_seconds=600)


def test_compaction_triggers_on_small_file_count_or_a_target_files_worth_of_bytes():
    state = TableState(last_expire=100.0, last_orphans=100.0)
    assert due(110.0, state, SmallFiles(9, 900), SETTINGS).compact is None
    assert due(110.0, state, SmallFiles(10, 100), SETTINGS).compact == "10 small files, 100 bytes"
    assert due(110.0, state, SmallFiles(3, 1000), SETTINGS).compact == "3 small files, 1000 bytes"
    assert due(110.0, state, SmallFiles(1, 5000), SETTINGS).compact is None  # one file: nothing to merge


def test_expiry_and_orphans_run_on_their_schedules():
    state = TableState(last_expire=100.0, last_orphans=100.0)
    assert (due(150.0, state, SmallFiles(), SETTINGS).expire, due(150.0, state, SmallFiles(), SETTINGS).orphans) == (
        False, False)
    assert due(160.0, state, SmallFiles(), SETTINGS).expire and not due(160.0, state, SmallFiles(), SETTINGS).orphans
    assert due(700.0, state, SmallFiles(), SETTINGS).orphans


def test_workers_of_a_pool_turn_maintenance_off_through_the_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kafka: {bootstrap.servers: 'x:1'}\ntables: [{table: a.b, topic: t}]\n")
    assert load_config(path, environ={}).maintenance.enabled
    assert not load_config(path, environ={"TABLETOPIC_MAINTENANCE__ENABLED": "false"}).maintenance.enabled


def test_a_tables_own_target_size_decides_its_compaction():
    state = TableState(last_expire=100.0, last_orphans=100.0)
    assert due(110.0, state, SmallFiles(3, 500), SETTINGS).compact is None
    assert due(110.0, state, SmallFiles(3, 500), SETTINGS, target_bytes=400).compact == "3 small files, 500 bytes"


def test_every_table_the_writer_writes_is_maintained(tmp_path):
    import yaml

    from tabletopic.compaction.scheduler import MaintainedTable, maintained_tables

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap.servers": "x:1"}, "maintenance": {"target_file_size_bytes": 1000},
        "tables": [
            {"table": "a.plain", "topic": "t", "target_file_size_bytes": 50},
            {"table": "a.skip", "topic": "u", "errors": "skip"},
            {"table": "s.other", "topic": "sales", "route_field": "r", "route_tables": {"eu": "s.eu"}},
            {"table": "raw.{topic}", "topic_pattern": "logs-.*"},
        ],
    }))
    config = load_config(path, environ={})
    assert maintained_tables(config, ["logs-a", "t", "sales", "nothing"]) == [
        MaintainedTable("a.plain", 50), MaintainedTable("a.plain__dlq", 50),
        MaintainedTable("a.skip", 1000),
        MaintainedTable("s.other", 1000), MaintainedTable("s.other__dlq", 1000),
        MaintainedTable("s.eu", 1000), MaintainedTable("s.eu__dlq", 1000),
        MaintainedTable("raw.logs_a", 1000), MaintainedTable("raw.logs_a__dlq", 1000),
    ]


@pytest.mark.parametrize("compaction", ["slow", "failing"])
def test_expiry_runs_while_compaction_is_slow_or_failing(tmp_path, monkeypatch, compaction):
    import threading
    import time

    import yaml

    from tabletopic.catalog.loader import open_catalog
    from tabletopic.compaction import rewrite
    from tabletopic.compaction.scheduler import maintain_forever
    from tests.unit.test_compaction import write_commits

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap.servers": "x:1"}, "catalog": {"warehouse": str(tmp_path / "wh")},
        "maintenance": {"check_interval_seconds": 0.1, "min_small_files": 2, "expire_interval_seconds": 0.2,
                        "expire_older_than_hours": 0, "keep_snapshots": 1, "orphans_interval_seconds": 3600},
        "tables": [{"table": "ns.t", "topic": "topic"}],
    }))
    config = load_config(path, environ={})
    catalog = open_catalog(config.catalog)
    write_commits(catalog, 8)
    stop, compacting = threading.Event(), threading.Event()

    def stuck_compaction(*args, **kwargs):
        compacting.set()
        if compaction == "slow":
            stop.wait(120)  # losing every race to busy writers until the service stops
        raise OSError("the object store refused the rewrite")

    monkeypatch.setattr(rewrite, "compact", stuck_compaction)
    maintainer = threading.Thread(target=maintain_forever, args=(config, stop.is_set))
    maintainer.start()
    try:
        deadline = time.monotonic() + 60
        while len(catalog.load_table("ns.t").metadata.snapshots) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert compacting.is_set()
        table = catalog.load_table("ns.t")
        assert len(table.metadata.snapshots) == 1, "expiry waited behind the compaction"
        assert table.scan().count() == 400
    finally:
        stop.set()
        maintainer.join(60)
    assert not maintainer.is_alive()
