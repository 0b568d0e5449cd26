"""What the JVM-based local services share: the download cache, Java and Maven."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

# Artifacts that Maven keeps beside a `.sha1` fetched from the repository it downloaded them from.
_ARTIFACT_SUFFIXES = (".jar", ".pom", ".tar.gz", ".zip")
_REPO_LOCAL = "-Dmaven.repo.local="


def cache_root() -> Path:
    """Large downloads live here, outside git: `$TABLETOPIC_CACHE` or ~/.cache/tabletopic."""
    return Path(os.environ.get("TABLETOPIC_CACHE", Path.home() / ".cache" / "tabletopic"))


def maven_repository() -> Path:
    """tabletopic's own Maven repository: nothing is taken from a ~/.m2 that other builds fill without checks."""
    return cache_root() / "maven-repository"


def java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("Java 17+ is needed for the local services: apt-get install -y openjdk-17-jdk-headless")
    return found


def maven(*args: str) -> None:
    """Run Maven with strict checksums (a file whose checksum differs from the repository's fails the
    download), then check every artifact in the local repository against its `.sha1` again."""
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven is needed to fetch the local services: apt-get install -y maven")
    given = [arg.removeprefix(_REPO_LOCAL) for arg in args if arg.startswith(_REPO_LOCAL)]
    repository = Path(given[-1]) if given else maven_repository()
    # The caller's -Dmaven.repo.local comes later on the command line, so it wins over this default.
    subprocess.run(["mvn", "-q", "-B", "--strict-checksums", f"{_REPO_LOCAL}{repository}", *args], check=True)
    verify_repository(repository)


def verify_repository(repository: Path) -> int:
    """Check each artifact against the `.sha1` the repository published; the number checked.

    Raises RuntimeError naming the file when a checksum is missing or differs.
    """
    checked = 0
    for artifact in _artifacts(repository):
        published = artifact.with_name(artifact.name + ".sha1")
        if not published.is_file():
            raise RuntimeError(f"{artifact}: no .sha1 from the repository beside it; delete it and fetch again")
        words = published.read_text().split()  # "HASH" or "HASH  file-name"
        expected = words[0].lower() if words else ""
        actual = sha1_of(artifact)
        if actual != expected:
            raise RuntimeError(
                f"{artifact}: sha1 {actual} differs from the repository's {expected or '(empty)'}; "
                "refusing it (delete it and fetch again)"
            )
        checked += 1
    return checked


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()  # the one checksum Maven Central publishes for every artifact
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _artifacts(repository: Path) -> Iterator[Path]:
    if not repository.is_dir():
        return
    for path in sorted(repository.rglob("*")):
        if path.is_file() and path.name.endswith(_ARTIFACT_SUFFIXES):
            yield path
