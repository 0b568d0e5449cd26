"""Maven downloads for the local services: strict checksums, and every artifact checked again by its .sha1."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tabletopic.local import jvm


def artifact(repository: Path, name: str, content: bytes, sha1: str | None) -> Path:
    path = repository / "org" / "example" / "thing" / "1.0" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if sha1 is not None:
        path.with_name(name + ".sha1").write_text(sha1)
    return path


def test_matching_checksums_pass(tmp_path: Path) -> None:
    jar = b"PK\x03\x04 a jar"
    artifact(tmp_path, "thing-1.0.jar", jar, hashlib.sha1(jar).hexdigest())
    # Some repositories write "HASH  file-name", in upper case.
    pom = b"<project/>"
    artifact(tmp_path, "thing-1.0.pom", pom, f"{hashlib.sha1(pom).hexdigest().upper()}  thing-1.0.pom\n")
    assert jvm.verify_repository(tmp_path) == 2


def test_a_tampered_jar_is_refused(tmp_path: Path) -> None:
    jar = artifact(tmp_path, "thing-1.0.jar", b"evil", hashlib.sha1(b"good").hexdigest())
    with pytest.raises(RuntimeError, match="differs from the repository") as refused:
        jvm.verify_repository(tmp_path)
    assert str(jar) in str(refused.value)


def test_a_jar_without_its_checksum_is_refused(tmp_path: Path) -> None:
    artifact(tmp_path, "server-1.0.tar.gz", b"tarball", None)
    with pytest.raises(RuntimeError, match=r"no \.sha1"):
        jvm.verify_repository(tmp_path)


def recorded_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    calls: list[list[str]] = []

    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setenv("TABLETOPIC_CACHE", str(tmp_path))
    monkeypatch.setattr(jvm.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(jvm.subprocess, "run", run)
    return calls


def test_maven_runs_with_strict_checksums_in_its_own_repository(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    calls = recorded_maven(monkeypatch, tmp_path)
    jvm.maven("dependency:copy", "-Dartifact=org.apache.iceberg:iceberg-aws-bundle:1.12.0")
    [command] = calls
    assert "--strict-checksums" in command
    assert f"-Dmaven.repo.local={tmp_path / 'maven-repository'}" in command
    assert command[-2:] == ["dependency:copy", "-Dartifact=org.apache.iceberg:iceberg-aws-bundle:1.12.0"]


def test_maven_checks_the_repository_it_downloaded_into(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    recorded_maven(monkeypatch, tmp_path)
    given = tmp_path / "m2"
    artifact(given, "thing-1.0.jar", b"evil", hashlib.sha1(b"good").hexdigest())
    with pytest.raises(RuntimeError, match="differs from the repository"):
        jvm.maven("dependency:copy", "-Dartifact=org.example:thing:1.0", f"-Dmaven.repo.local={given}")
