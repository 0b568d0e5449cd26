"""The broker's jars: the pinned list agrees with the versions kafka.py starts, and a download whose
SHA-1 differs from the pinned one is refused and never becomes a cache hit."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from tabletopic.local import kafka
from tabletopic.local.kafka_jars import BROKER_JARS, BROKER_JARS_3_9, Jar


def test_the_pinned_jars_are_the_versions_kafka_py_names() -> None:
    versions = {jar.artifact: jar.version for jar in BROKER_JARS}
    assert versions["kafka_2.13"] == kafka.KAFKA_VERSION
    assert versions["kafka-clients"] == kafka.KAFKA_VERSION
    assert versions["slf4j-api"] == kafka.SLF4J_VERSION  # 2.x alone: the log4j bridge needs it
    assert versions["log4j-slf4j2-impl"] == versions["log4j-core"] == kafka.LOG4J_VERSION
    assert [a for a, n in Counter(jar.artifact for jar in BROKER_JARS).items() if n > 1] == []
    assert all(len(jar.sha1) == 40 and int(jar.sha1, 16) >= 0 for jar in BROKER_JARS)


def test_a_jar_url_is_its_maven_repository_path() -> None:
    jar = Jar("org.apache.kafka", "kafka_2.13", "4.1.1", "0" * 40)
    assert jar.url("https://repo.example/maven2") == (
        "https://repo.example/maven2/org/apache/kafka/kafka_2.13/4.1.1/kafka_2.13-4.1.1.jar")


def _repository(root: Path, contents: dict[Jar, bytes]) -> str:
    for jar, content in contents.items():
        path = Path(jar.url(str(root)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root.as_uri()


def _jars(broker: bytes, library: bytes) -> tuple[Jar, Jar]:
    return (Jar("org.apache.kafka", "kafka_2.13", kafka.KAFKA_VERSION, hashlib.sha1(broker).hexdigest()),
            Jar("org.example", "library", "1.0", hashlib.sha1(library).hexdigest()))


def test_fetch_downloads_every_jar_once_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLETOPIC_CACHE", str(tmp_path / "cache"))
    jars = _jars(b"broker", b"library")
    monkeypatch.setattr(kafka, "BROKER_JARS", jars)
    libs = kafka.fetch(_repository(tmp_path / "repo", dict(zip(jars, (b"broker", b"library"), strict=True))))
    assert sorted(p.name for p in libs.iterdir()) == sorted(jar.file_name for jar in jars)
    assert (libs / jars[1].file_name).read_bytes() == b"library"


def test_a_jar_that_differs_from_its_pin_is_refused_and_leaves_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLETOPIC_CACHE", str(tmp_path / "cache"))
    jars = _jars(b"broker", b"library")
    monkeypatch.setattr(kafka, "BROKER_JARS", jars)
    repository = _repository(tmp_path / "repo", {jars[0]: b"broker", jars[1]: b"tampered"})
    with pytest.raises(RuntimeError, match=r"library-1\.0\.jar: sha1 .* differs from the pinned"):
        kafka.fetch(repository)
    assert not kafka.kafka_libs().exists()  # the next fetch starts over, not from a cache hit


def test_the_3_9_pins_are_the_versions_kafka_py_names() -> None:
    versions = {jar.artifact: jar.version for jar in BROKER_JARS_3_9}
    assert versions["kafka_2.13"] == versions["kafka-clients"] == versions["kafka-raft"] == kafka.KAFKA_3_9_VERSION
    assert versions["slf4j-api"] == kafka.SLF4J_VERSION
    # 3.9 calls the log4j 1 API as well: log4j-1.2-api sends it to the same log4j2 config.
    assert versions["log4j-slf4j2-impl"] == versions["log4j-1.2-api"] == kafka.LOG4J_VERSION
    # Two metrics-core (Yammer's, Dropwizard's for ZooKeeper): one folder holds both as their versions differ.
    assert len({(jar.group, jar.artifact) for jar in BROKER_JARS_3_9}) == len(BROKER_JARS_3_9)
    assert len({jar.file_name for jar in BROKER_JARS_3_9}) == len(BROKER_JARS_3_9)
    assert all(len(jar.sha1) == 40 and int(jar.sha1, 16) >= 0 for jar in BROKER_JARS_3_9)


def test_each_version_is_fetched_into_its_own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLETOPIC_CACHE", str(tmp_path / "cache"))
    jar = Jar("org.apache.kafka", "kafka_2.13", kafka.KAFKA_3_9_VERSION, hashlib.sha1(b"3.9").hexdigest())
    monkeypatch.setattr(kafka, "BROKER_JARS_3_9", (jar,))
    libs = kafka.fetch(_repository(tmp_path / "repo", {jar: b"3.9"}), version=kafka.KAFKA_3_9_VERSION)
    assert libs == kafka.kafka_libs(kafka.KAFKA_3_9_VERSION) != kafka.kafka_libs()
    assert [p.name for p in libs.iterdir()] == [f"kafka_2.13-{kafka.KAFKA_3_9_VERSION}.jar"]


def test_a_version_without_pinned_jars_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no pinned jars for Apache Kafka 3\.8\.1: 4\.1\.1, 3\.9\.2"):
        kafka.LocalKafka(tmp_path, version="3.8.1")


def test_only_a_4_x_broker_is_given_share_group_settings(tmp_path: Path) -> None:
    def share_settings(version: str) -> list[str]:
        properties = kafka.LocalKafka(tmp_path, version=version)._properties()
        return [name for name in properties if name.startswith("share.")]

    assert share_settings(kafka.KAFKA_VERSION) != []
    assert share_settings(kafka.KAFKA_3_9_VERSION) == []  # 3.9 would warn of settings it does not know
