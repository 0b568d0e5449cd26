"""What the JVM-based local services share: the download cache, Java and Maven."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def cache_root() -> Path:
    """Large downloads live here, outside git: `$TABLETOPIC_CACHE` or ~/.cache/tabletopic."""
    return Path(os.environ.get("TABLETOPIC_CACHE", Path.home() / ".cache" / "tabletopic"))


def java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("Java 17+ is needed for the local services: apt-get install -y openjdk-17-jdk-headless")
    return found


def maven(*args: str) -> None:
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven is needed to fetch the local services: apt-get install -y maven")
    subprocess.run(["mvn", "-q", "-B", *args], check=True)
