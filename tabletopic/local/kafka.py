"""A single-node Apache Kafka 4.x broker in KRaft mode, built from Maven Central jars.

Step 1 (`fetch`) resolves `org.apache.kafka:kafka_2.13` and its runtime dependencies with
`mvn dependency:copy-dependencies` into a cache folder outside git, once.
Step 2 (`LocalKafka.start`) formats the log dir (unless it is a restart) and starts `kafka.Kafka`
on free loopback ports.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tabletopic.local.jvm import cache_root, java, maven
from tabletopic.local.ports import free_port, wait_for_port
from tabletopic.local.process import stop_process

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"
# A cold JVM on a loaded 2-core machine takes 10-20 s to open its listener.
START_TIMEOUT_S = 90.0


def kafka_libs() -> Path:
    return cache_root() / f"kafka-{KAFKA_VERSION}" / "libs"


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tabletopic.local</groupId><artifactId>kafka-fetch</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def fetch() -> Path:
    """Download the broker's jars into the cache (a no-op when they are there)."""
    libs = kafka_libs()
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return libs
    with tempfile.TemporaryDirectory() as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(_POM.format(kafka=KAFKA_VERSION, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION))
        staging = libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        maven("-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime")
        # slf4j 1.x comes in transitively; the log4j bridge needs 2.x alone on the classpath.
        for old in staging.glob("slf4j-api-1.*.jar"):
            old.unlink()
        staging.rename(libs)
    return libs


_LOG4J2 = """Configuration:
  status: warn
  Appenders:
    File:
      name: file
      fileName: "{log}"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: file
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""


@dataclass
class LocalKafka:
    """One KRaft node (broker + controller) on loopback; `bootstrap` is HOST:PORT for clients."""

    workdir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    extra_properties: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests create a group and expect it to form at once, not after the default 3 s.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        props.update(self.extra_properties)
        return props

    def start(self) -> LocalKafka:
        libs = fetch()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        log4j = self.workdir / "log4j2.yaml"
        log4j.write_text(_LOG4J2.format(log=self.workdir / "server.log"))
        jvm = [
            java(), "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*",
        ]
        if not (self.workdir / "data" / "meta.properties").exists():  # a restart keeps its log
            subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}", "-c", str(config)],
                check=True, stdout=subprocess.DEVNULL,
            )
        with (self.workdir / "stdout.log").open("ab") as out:
            self.process = subprocess.Popen([*jvm, "kafka.Kafka", str(config)], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, START_TIMEOUT_S, "Kafka broker")
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout_s=30)
        self.process = None


def _cluster_id() -> str:
    # KRaft wants a base64url-encoded 16-byte id, like `kafka-storage random-uuid` prints.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


if __name__ == "__main__":
    kafka = LocalKafka(Path(tempfile.mkdtemp(prefix="tabletopic-kafka-"))).start()
    print(kafka.bootstrap, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        kafka.stop()
