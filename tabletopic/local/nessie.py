"""Project Nessie's server on loopback, serving the Iceberg REST API over an S3 warehouse (moto's server).

A production REST catalog rather than a test fixture: Nessie publishes its Quarkus server as one
runnable jar on Maven Central (`org.projectnessie.nessie:nessie-quarkus:<v>:runner`); 0.99.0 is the
newest version Maven Central serves there. Step 1 (`fetch`) copies it into the cache once; step 2
runs it with `config/application.properties` in its working directory (Quarkus reads that file),
which keeps the S3 secret out of the command line. Its version store is in memory: one per start.

The warehouse is served without request signing, so pyiceberg reads and writes S3 with the
credentials of its own `s3.*` properties; Nessie commits by compare-and-swap on its branch and
answers a stale commit (an `assert-ref-snapshot-id` that no longer holds) with 409.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tabletopic.local.jvm import cache_root, maven
from tabletopic.local.ports import free_port
from tabletopic.local.process import http_answers, stop_process, wait_until_ready
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from tabletopic.local.trino import java25_home

NESSIE_VERSION = "0.99.0"
WAREHOUSE = "warehouse"
START_TIMEOUT_S = 120.0

_CONFIG = """\
quarkus.http.host=127.0.0.1
quarkus.http.port={port}
quarkus.management.host=127.0.0.1
quarkus.management.port={management_port}
quarkus.log.file.enabled=false
quarkus.log.console.level=INFO
quarkus.log.category."io.quarkus.http.access-log".level=WARN
quarkus.otel.sdk.disabled=true
nessie.version.store.type=IN_MEMORY
nessie.server.authentication.enabled=false
nessie.catalog.default-warehouse={warehouse}
nessie.catalog.warehouses.{warehouse}.location={location}
nessie.catalog.service.s3.default-options.endpoint={endpoint}
nessie.catalog.service.s3.default-options.path-style-access=true
nessie.catalog.service.s3.default-options.region={region}
nessie.catalog.service.s3.default-options.auth-type=STATIC
nessie.catalog.service.s3.default-options.request-signing-enabled=false
nessie.catalog.service.s3.default-options.access-key=urn:nessie-secret:quarkus:tabletopic.s3
tabletopic.s3.name={access_key}
tabletopic.s3.secret={secret_key}
"""


def runner_jar() -> Path:
    return cache_root() / f"nessie-{NESSIE_VERSION}" / f"nessie-quarkus-{NESSIE_VERSION}-runner.jar"


def fetch() -> Path:
    """Copy Nessie's runnable jar into the cache (a no-op when it is there)."""
    jar = runner_jar()
    if jar.exists():
        return jar
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        maven("dependency:copy", f"-Dartifact=org.projectnessie.nessie:nessie-quarkus:{NESSIE_VERSION}:jar:runner",
              f"-DoutputDirectory={work}")
        (Path(work) / jar.name).rename(jar)
    return jar


@dataclass
class LocalNessie:
    workdir: Path
    s3: LocalS3
    bucket: str = "nessie"
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The Iceberg REST API's base (pyiceberg and Spark add /v1/...)."""
        return f"http://127.0.0.1:{self.port}/iceberg"

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/wh"

    @property
    def log(self) -> Path:
        return self.workdir / "nessie.log"

    def client_properties(self) -> dict[str, str]:
        """pyiceberg catalog properties (tabletopic's `catalog:` section) for this catalog.

        Nessie vends the S3 endpoint but no credentials (no request signing, no STS here), so the
        client brings its own `s3.*`.
        """
        return {"type": "rest", "uri": self.uri, "warehouse": WAREHOUSE, **self.s3.catalog_properties()}

    def start(self) -> LocalNessie:
        jar = fetch()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.s3.create_bucket(self.bucket)
        config = self.workdir / "config" / "application.properties"
        config.parent.mkdir(exist_ok=True)
        config.write_text(_CONFIG.format(
            port=self.port, management_port=self.management_port, warehouse=WAREHOUSE, location=self.location,
            endpoint=self.s3.endpoint, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
        ))
        config.chmod(0o600)
        # Nessie 0.99 is built for Java 21; the machine has 17 (Spark) and 25 (Trino).
        command = [str(java25_home() / "bin" / "java"), "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                   "-jar", str(jar)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=self.workdir, env={**os.environ},
                                            stdout=out, stderr=subprocess.STDOUT)
        ready = f"http://127.0.0.1:{self.management_port}/q/health/ready"
        try:
            wait_until_ready(self.process, lambda: http_answers(ready, b'"status":"UP"'), START_TIMEOUT_S,
                             "Nessie", self.log, interval_s=0.3)
        except TimeoutError:
            self.stop()
            raise
        return self

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The server frozen (SIGSTOP): connections are accepted by the kernel but never answered."""
        if self.process is None:
            raise RuntimeError("Nessie is not running")
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped JVM cannot act on SIGTERM
        stop_process(self.process)
        self.process = None
