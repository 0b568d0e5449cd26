"""The broker's jars: the pinned list agrees with the versions kafka.py starts, and a download whose
SHA-1 differs from the pinned one is refused and never becomes a cache hit."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from tabletopic.local import kafka
from tabletopic.local.kafka_jars import BROKER_JARS, Jar


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
