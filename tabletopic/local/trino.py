"""A Trino server on loopback with the Iceberg connector on a REST catalog over S3 (moto), for tests.

Step 1 (`fetch`): `io.trino:trino-server:<v>:tar.gz` from Maven Central (~780 MiB) once; only
`bin/`, `lib/` and `plugin/iceberg/` are unpacked into the cache, then the archive is dropped.
Step 2 (`LocalTrino.start`): a single-node coordinator on Java 25 (Trino 476 needs 24+), its one
catalog `lake` pointing at the REST catalog, S3 through Trino's native file system.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tabletopic.local.jvm import cache_root, maven
from tabletopic.local.ports import free_port
from tabletopic.local.process import http_answers, stop_process, wait_until_ready
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY

# The newest trino-server tarball Maven Central serves here.
TRINO_VERSION = "476"
# Trino loads its plugins and the catalog in ~20 s on an idle 2-core machine.
START_TIMEOUT_S = 240.0
_KEEP = ("bin/", "lib/", "plugin/iceberg/")


def home() -> Path:
    return cache_root() / f"trino-server-{TRINO_VERSION}"


def java25_home() -> Path:
    for candidate in sorted(Path("/usr/lib/jvm").glob("*25*")):
        if (candidate / "bin" / "java").exists():
            return candidate
    raise RuntimeError("Trino needs Java 24+ beside Java 17: apt-get install -y temurin-25-jdk (or any JDK 25)")


def fetch() -> Path:
    """Download Trino and keep the launcher, libraries and the Iceberg plugin (a no-op when there)."""
    target = home()
    if (target / "lib").is_dir() and (target / "plugin" / "iceberg").is_dir():
        return target
    with tempfile.TemporaryDirectory() as work:
        repository = Path(work) / "m2"
        maven("dependency:copy", f"-Dartifact=io.trino:trino-server:{TRINO_VERSION}:tar.gz",
              f"-DoutputDirectory={work}", f"-Dmaven.repo.local={repository}")
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        prefix = f"trino-server-{TRINO_VERSION}/"
        with tarfile.open(Path(work) / f"trino-server-{TRINO_VERSION}.tar.gz") as tar:
            # Plugin jars are hard links into lib/, so lib/ comes along and names keep their prefix.
            members = [m for m in tar.getmembers() if m.name.removeprefix(prefix).startswith(_KEEP)]
            tar.extractall(staging, members=members, filter="data")
        (staging / prefix).rename(target)
        shutil.rmtree(staging)
    return target


@dataclass
class LocalTrino:
    workdir: Path
    rest: LocalRestCatalog
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        etc = self.workdir / "etc"
        (etc / "catalog").mkdir(parents=True, exist_ok=True)
        (etc / "node.properties").write_text(
            f"node.environment=test\nnode.id=tabletopic-tests\nnode.data-dir={self.workdir / 'data'}\n"
            # Announce itself on loopback, whatever the host name resolves to.
            "node.internal-address=127.0.0.1\n")
        (etc / "jvm.config").write_text("\n".join([
            "-server", "-Xmx2G", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError", "-XX:ReservedCodeCacheSize=256M",
            "-Djdk.attach.allowAttachSelf=true", "-Dfile.encoding=UTF-8", "-XX:+EnableDynamicAgentLoading", "",
        ]))
        (etc / "config.properties").write_text("\n".join([
            "coordinator=true",
            "node-scheduler.include-coordinator=true",
            f"http-server.http.port={self.port}",
            f"discovery.uri=http://127.0.0.1:{self.port}",
            "query.max-memory=1GB",
            "query.max-memory-per-node=512MB",
            f"plugin.dir={home() / 'plugin'}",
            # Tests add catalogs at run time (CREATE CATALOG): one server reads every catalog of the matrix.
            "catalog.management=dynamic",
            "",
        ]))
        (etc / "catalog" / "lake.properties").write_text("\n".join([
            "connector.name=iceberg",
            "iceberg.catalog.type=rest",
            f"iceberg.rest-catalog.uri={self.rest.uri}",
            "fs.native-s3.enabled=true",
            f"s3.endpoint={self.rest.s3.endpoint}",
            "s3.path-style-access=true",
            f"s3.region={REGION}",
            f"s3.aws-access-key={ACCESS_KEY}",
            f"s3.aws-secret-key={SECRET_KEY}",
            "",
        ]))
        return etc

    def start(self) -> LocalTrino:
        server = fetch()
        java_home = java25_home()
        etc = self._write_config()
        env = {**os.environ, "JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}:{os.environ.get('PATH', '')}"}
        command = [str(server / "bin" / "launcher"), "run", f"--etc-dir={etc}", f"--data-dir={self.workdir / 'data'}"]
        with (self.workdir / "trino.log").open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        info = f"http://127.0.0.1:{self.port}/v1/info"
        try:
            wait_until_ready(self.process, lambda: http_answers(info, b'"starting":false'), START_TIMEOUT_S,
                             "Trino", self.workdir / "trino.log", interval_s=1)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
