"""A real Confluent-compatible Schema Registry on loopback: Apicurio Registry, from Maven Central.

Apicurio serves Confluent's REST API under `/apis/ccompat/v7` and keeps schemas in memory.
Step 1 (`fetch`) downloads `io.apicurio:apicurio-registry-app:<v>:tar.gz:all` once into the cache.
Step 2 (`LocalRegistry.start`) runs its Quarkus runner jar on a free loopback port (Java 17).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tabletopic.local.jvm import cache_root, java, maven
from tabletopic.local.ports import free_port
from tabletopic.local.process import http_answers, stop_process, wait_until_ready

APICURIO_VERSION = "2.6.13.Final"
# Quarkus starts in ~6 s on an idle 2-core machine; a loaded one needs several times that.
START_TIMEOUT_S = 120.0


def registry_home() -> Path:
    return cache_root() / f"apicurio-registry-{APICURIO_VERSION}"


def runner_jar() -> Path:
    return registry_home() / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"


def fetch() -> Path:
    """Download and unpack the registry into the cache (a no-op when it is there)."""
    if runner_jar().exists():
        return runner_jar()
    with tempfile.TemporaryDirectory() as work:
        maven("dependency:copy", f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
              f"-DoutputDirectory={work}")
        archive = next(Path(work).glob("*.tar.gz"))
        staging = registry_home().with_name(registry_home().name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        staging.rename(registry_home())
    return runner_jar()


@dataclass
class LocalRegistry:
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL to give a Confluent client."""
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v7"

    def start(self) -> LocalRegistry:
        jar = fetch()
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            java(), "-Xmx256m",
            "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.http.access-log.enabled=false",
            "-jar", str(jar),
        ]
        with (self.workdir / "registry.log").open("ab") as out:
            self.process = subprocess.Popen(command, cwd=jar.parent, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(self.process, lambda: http_answers(f"{self.url}/subjects"), START_TIMEOUT_S,
                             "the Schema Registry", self.workdir / "registry.log")
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout_s=30)
        self.process = None
