"""A Kafka Connect worker in standalone mode, built from Maven Central jars, for tests and benchmarks.

Step 1 (`fetch_worker`) resolves the worker (`connect-runtime`, `connect-json`, log4j 2) into the cache
with `mvn dependency:copy-dependencies`, once. Connectors are plugins on `plugin.path`, isolated from the
worker as in a real deployment; each caller fetches its own.
Step 2 (`LocalConnect.start`) writes the worker properties and runs `ConnectStandalone` on a free loopback
port, with the connectors given at start; more can be added and removed through the REST API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabletopic.local.jvm import cache_root, java, maven
from tabletopic.local.kafka import KAFKA_VERSION, LOG4J_VERSION, SLF4J_VERSION
from tabletopic.local.ports import free_port
from tabletopic.local.process import http_answers, stop_process, wait_until_ready

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tabletopic.local</groupId><artifactId>{name}</artifactId><version>1</version>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""
WORKER = [
    ("org.apache.kafka", "connect-runtime", KAFKA_VERSION),
    ("org.apache.kafka", "connect-json", KAFKA_VERSION),
    ("org.slf4j", "slf4j-api", SLF4J_VERSION),
    ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
]
# A cold worker on a loaded 2-core machine takes 10-20 s before its REST API answers; a task as long again.
START_TIMEOUT_S = 180.0
TASK_TIMEOUT_S = 120.0


def worker_libs() -> Path:
    return cache_root() / f"kafka-connect-{KAFKA_VERSION}" / "libs"


def copy_dependencies(name: str, dependencies: Sequence[tuple[str, str, str]], target: Path, work: Path) -> None:
    """`mvn dependency:copy-dependencies` of (group, artifact, version)s, runtime scope, into `target`."""
    lines = "\n".join(f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
                      "</dependency>" for g, a, v in dependencies)
    pom = work / f"{name}.xml"
    pom.write_text(_POM.format(name=name, dependencies=lines))
    maven("-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={target}", "-DincludeScope=runtime")


def fetch_worker() -> Path:
    """The folder of the worker's jars (its classpath); a no-op when it is there."""
    libs = worker_libs()
    if libs.is_dir():
        return libs
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory() as work:
        copy_dependencies("connect-worker", WORKER, staging, Path(work))
    staging.rename(libs)
    return libs


# Properties, not YAML: the worker's classpath has no jackson-dataformat-yaml.
_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""
# What bin/kafka-run-class.sh and bin/connect-standalone.sh give the JVM (but -Xmx: the caller's, 2g there).
_JVM_OPTIONS = [
    "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
]


class ConnectorFailed(RuntimeError):
    """A connector or one of its tasks is FAILED; the message carries Connect's status (with the trace)."""


def _logger_lines(loggers: Mapping[str, str]) -> str:
    lines = []
    for index, (name, level) in enumerate(loggers.items()):
        lines.append(f"logger.l{index}.name = {name}\nlogger.l{index}.level = {level}\n")
    return "".join(lines)


@dataclass
class LocalConnect:
    """One ConnectStandalone worker on `bootstrap`, loading connectors from `plugin_path`.

    `connectors`: name -> properties, started with the worker (as connector property files).
    Logs go to workdir/connect.log: `log_level` for the root logger, `loggers` (name -> level) for others.
    """

    workdir: Path
    bootstrap: str
    plugin_path: Path
    connectors: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    max_heap: str = "256m"
    cpus: str | None = None  # e.g. "0,1": run under `taskset -c`
    log_level: str = "WARN"
    loggers: Mapping[str, str] = field(default_factory=dict)
    extra_properties: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "connect.log"

    def worker_properties(self) -> dict[str, str]:
        return {
            "bootstrap.servers": self.bootstrap,
            "key.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "offset.storage.file.filename": str(self.workdir / "connect.offsets"),
            "plugin.path": str(self.plugin_path),
            "listeners": self.url,
            # Every plugin here has ServiceLoader manifests (Connect says so): skip ~10 s of reflective scanning.
            "plugin.discovery": "service_load",
            **self.extra_properties,
        }

    def command(self) -> list[str]:
        """The command line; writes the worker, connector and log4j files it names."""
        libs = fetch_worker()
        self.workdir.mkdir(parents=True, exist_ok=True)
        worker = self.workdir / "worker.properties"
        worker.write_text(_properties_text(self.worker_properties()))
        log4j = self.workdir / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log=self.log, level=self.log_level) + _logger_lines(self.loggers))
        connector_files = []
        for name, properties in self.connectors.items():
            path = self.workdir / f"connector-{name}.properties"
            path.write_text(_properties_text({"name": name, **properties}))
            connector_files.append(str(path))
        command = [
            java(), "-Xms256m", f"-Xmx{self.max_heap}", *_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone", str(worker), *connector_files,
        ]
        return ["taskset", "-c", self.cpus, *command] if self.cpus is not None else command

    def start(self, timeout_s: float = START_TIMEOUT_S) -> LocalConnect:
        """Start the worker; return once its REST API answers and every task of `connectors` is RUNNING."""
        command = self.command()
        with (self.workdir / "stdout.log").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            wait_until_ready(self.process, lambda: http_answers(f"{self.url}/"), timeout_s, "Kafka Connect",
                             self.log, interval_s=0.5)
            for name, properties in self.connectors.items():
                tasks = int(properties.get("tasks.max", "1"))
                self.wait_task_running(name, tasks, max(deadline - time.monotonic(), 1.0))
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout_s=30)
        self.process = None

    def check(self) -> None:
        """RuntimeError if the worker has exited."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"the Connect worker is not running; see {self.log}")

    def put_connector(self, name: str, config: Mapping[str, str]) -> dict[str, Any]:
        """Create or reconfigure connector `name` (`PUT /connectors/<name>/config`); Connect's answer."""
        return self._request("PUT", f"/connectors/{name}/config", {"name": name, **config})

    def delete_connector(self, name: str) -> None:
        """Stop and remove connector `name` (`DELETE /connectors/<name>`)."""
        self._request("DELETE", f"/connectors/{name}")

    def status(self, name: str) -> dict[str, Any] | None:
        """`GET /connectors/<name>/status`, or None while Connect does not know it (or does not answer)."""
        try:
            return self._request("GET", f"/connectors/{name}/status")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def task_running(self, name: str, tasks: int = 1) -> bool:
        """True once `tasks` tasks of `name` are RUNNING; ConnectorFailed as soon as it or a task has FAILED."""
        status = self.status(name)
        if status is None:
            return False
        return tasks_running(status, tasks)

    def wait_task_running(self, name: str, tasks: int = 1, timeout_s: float = TASK_TIMEOUT_S) -> None:
        """Until `tasks` tasks of `name` run; ConnectorFailed, RuntimeError if the worker exits, or TimeoutError."""
        if self.process is None:
            raise RuntimeError("the Connect worker is not started")
        wait_until_ready(self.process, lambda: self.task_running(name, tasks), timeout_s,
                         f"Kafka Connect's connector {name}", self.log, interval_s=0.5)

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            if method == "GET" and error.code == 404:
                raise
            raise RuntimeError(f"Kafka Connect: {method} {path} -> {error.code}: {error.read().decode()}") from error
        return json.loads(raw) if raw else {}


def tasks_running(status: Mapping[str, Any], tasks: int) -> bool:
    """Whether a `/status` answer shows `tasks` RUNNING tasks; ConnectorFailed if the connector or a task FAILED."""
    states = [task.get("state") for task in status.get("tasks", [])]
    if status.get("connector", {}).get("state") == "FAILED" or "FAILED" in states:
        raise ConnectorFailed(f"connector {status.get('name')} failed: {json.dumps(status)}")
    return len(states) == tasks and all(state == "RUNNING" for state in states)


def _properties_text(properties: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in properties.items())
