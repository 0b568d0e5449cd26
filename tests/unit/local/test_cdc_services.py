"""The pure parts of the CDC test services: finding PostgreSQL, running it as its own user, reading
Connect's task status, and unpacking Debezium's plugin without its bundled Kafka jars, once."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tabletopic.local import debezium
from tabletopic.local.connect import ConnectorFailed, tasks_running
from tabletopic.local.postgres import INSTALL_HINT, as_service_user, postgres_bin


def _install(root: Path, major: str, tools: tuple[str, ...] = ("initdb", "pg_ctl", "psql")) -> Path:
    bin_dir = root / major / "bin"
    bin_dir.mkdir(parents=True)
    for tool in tools:
        (bin_dir / tool).touch()
    return bin_dir


def test_the_newest_complete_postgresql_is_taken(tmp_path: Path) -> None:
    _install(tmp_path, "9")
    newest = _install(tmp_path, "15")
    _install(tmp_path, "16", tools=("initdb",))  # a client-less leftover
    (tmp_path / "common" / "bin").mkdir(parents=True)
    assert postgres_bin(tmp_path) == newest


def test_no_postgresql_names_the_apt_get_line(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="apt-get install -y postgresql"):
        postgres_bin(tmp_path)
    assert INSTALL_HINT == "PostgreSQL is needed: apt-get install -y postgresql"


def test_root_runs_postgresql_as_its_own_user() -> None:
    assert as_service_user(["initdb", "-D", "x"], euid=0) == ["runuser", "-u", "postgres", "--", "initdb", "-D", "x"]
    assert as_service_user(["initdb", "-D", "x"], euid=1000) == ["initdb", "-D", "x"]


def _status(connector: str, *tasks: str) -> dict[str, Any]:
    return {"name": "c", "connector": {"state": connector},
            "tasks": [{"id": i, "state": state} for i, state in enumerate(tasks)]}


def test_tasks_running_only_when_all_expected_tasks_run() -> None:
    assert tasks_running(_status("RUNNING", "RUNNING", "RUNNING"), 2)
    assert not tasks_running(_status("RUNNING", "RUNNING"), 2)
    assert not tasks_running(_status("RUNNING", "RUNNING", "UNASSIGNED"), 2)
    assert not tasks_running(_status("RUNNING"), 1)


@pytest.mark.parametrize("status", [_status("RUNNING", "RUNNING", "FAILED"), _status("FAILED")])
def test_a_failed_connector_or_task_raises_with_its_status(status: dict[str, Any]) -> None:
    with pytest.raises(ConnectorFailed, match="FAILED"):
        tasks_running(status, 2)


def _plugin_archive(target: Path) -> None:
    with tarfile.open(target / f"debezium-connector-postgres-{debezium.DEBEZIUM_VERSION}-plugin.tar.gz",
                      "w:gz") as tar:
        for name in ("debezium-connector-postgres-3.6.1.Final.jar", "postgresql-42.7.11.jar",
                     "connect-api-4.3.0.jar", "kafka-clients-4.3.0.jar"):
            info = tarfile.TarInfo(f"{debezium.PLUGIN_FOLDER}/{name}")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"PK"))


def test_the_plugin_is_unpacked_once_without_the_bundled_kafka_jars(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("TABLETOPIC_CACHE", str(tmp_path / "cache"))
    calls: list[tuple[str, ...]] = []

    def maven(*args: str) -> None:
        calls.append(args)
        output = next(arg.removeprefix("-DoutputDirectory=") for arg in args if arg.startswith("-DoutputDirectory="))
        _plugin_archive(Path(output))

    monkeypatch.setattr(debezium, "maven", maven)
    plugin_path = debezium.fetch()
    assert debezium.fetch() == plugin_path  # the second is a no-op
    assert len(calls) == 1
    assert f"-Dartifact=io.debezium:debezium-connector-postgres:{debezium.DEBEZIUM_VERSION}:tar.gz:plugin" in calls[0]
    assert sorted(path.name for path in (plugin_path / debezium.PLUGIN_FOLDER).iterdir()) == [
        "debezium-connector-postgres-3.6.1.Final.jar", "postgresql-42.7.11.jar",
    ]
    assert [path.name for path in plugin_path.iterdir()] == [debezium.PLUGIN_FOLDER]
