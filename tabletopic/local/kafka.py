"""A single-node Apache Kafka broker in KRaft mode, built from Maven Central jars: 4.1 by default,
3.9 (the last 3.x line) on request, `LocalKafka(..., version=KAFKA_3_9_VERSION)`.

Step 1 (`fetch`) downloads the broker's runtime jars (kafka_jars.py: each with its pinned SHA-1) into a
cache folder outside git, once: about 43 MB, plain HTTPS, no Maven.
Step 2 (`LocalKafka.start`) formats the log dir (unless it is a restart) and starts `kafka.Kafka`
on free loopback ports.

Opt-in, beside the PLAINTEXT listener that stays as it is: `secure=True` adds a SASL_SSL listener
(SCRAM-SHA-512, one user whose credentials the storage format writes into the metadata log) with a
throwaway CA and server certificate (tls.py) read as PEM stores; `mtls=True` also adds an SSL
listener that requires a client certificate from that CA. `client_settings()` gives the librdkafka
settings for either.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tabletopic.local.jvm import cache_root, java
from tabletopic.local.kafka_jars import BROKER_JARS, BROKER_JARS_3_9, MAVEN_CENTRAL, Jar
from tabletopic.local.ports import free_port, wait_for_port
from tabletopic.local.process import stop_process
from tabletopic.local.tls import KeyPair, LocalCA, make_ca

KAFKA_VERSION = "4.1.1"
KAFKA_3_9_VERSION = "3.9.2"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"
# A cold JVM on a loaded 2-core machine takes 10-20 s to open its listener.
START_TIMEOUT_S = 90.0
SCRAM_MECHANISM = "SCRAM-SHA-512"
# What may stand unquoted in `--add-scram 'SCRAM-SHA-512=[name=...,password=...]'`.
_SCRAM_SAFE = re.compile(r"[A-Za-z0-9._~@+/-]+")


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}" / "libs"


def broker_jars(version: str = KAFKA_VERSION) -> tuple[Jar, ...]:
    pinned = {KAFKA_VERSION: BROKER_JARS, KAFKA_3_9_VERSION: BROKER_JARS_3_9}
    if version not in pinned:
        raise ValueError(f"no pinned jars for Apache Kafka {version}: {', '.join(pinned)} (kafka_jars.py)")
    return pinned[version]


DOWNLOAD_THREADS = 8
DOWNLOAD_TIMEOUT_S = 60.0


def fetch(repository: str = MAVEN_CENTRAL, version: str = KAFKA_VERSION) -> Path:
    """Download the broker's jars into the cache (a no-op when they are there).

    Each jar is checked against its pinned SHA-1 before the folder takes its final name, so a
    half-done or tampered download never looks like a cache hit."""
    jars = broker_jars(version)
    libs = kafka_libs(version)
    if (libs / f"kafka_2.13-{version}.jar").exists():
        return libs
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        for _ in pool.map(lambda jar: _download(jar, repository, staging), jars):
            pass
    staging.rename(libs)
    return libs


def _download(jar: Jar, repository: str, folder: Path) -> None:
    url = jar.url(repository)
    digest = hashlib.sha1()  # the checksum Maven Central publishes for every artifact
    target = folder / jar.file_name
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, target.open("wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise RuntimeError(f"downloading {url} failed: {exc}") from exc
    if digest.hexdigest() != jar.sha1:
        target.unlink()
        raise RuntimeError(f"{url}: sha1 {digest.hexdigest()} differs from the pinned {jar.sha1}; refusing it")


# log4j2's properties format: it needs no parser jar (YAML would want jackson-dataformat-yaml, not in 3.9's list).
_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


@dataclass
class LocalKafka:
    """One KRaft node (broker + controller) on loopback; `bootstrap` is HOST:PORT for clients.

    With `secure=True`, `secure_bootstrap` is a SASL_SSL listener (SCRAM-SHA-512 as
    `sasl_username`/`sasl_password`, the server certificate signed by the CA in `ca_pem_path`);
    with `mtls=True`, `mtls_bootstrap` is an SSL listener that wants a client certificate
    (`client_cert_path`, `client_key_path`). `bootstrap` stays PLAINTEXT either way."""

    workdir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    extra_properties: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    secure: bool = False
    sasl_username: str = "tabletopic"
    sasl_password: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    secure_port: int = field(default_factory=free_port)
    mtls: bool = False
    mtls_port: int = field(default_factory=free_port)
    tls: LocalCA | None = field(default=None, repr=False)
    version: str = KAFKA_VERSION

    def __post_init__(self) -> None:
        broker_jars(self.version)  # an unknown version fails here, not at start
        if self.secure:
            for what, value in (("sasl_username", self.sasl_username), ("sasl_password", self.sasl_password)):
                if not _SCRAM_SAFE.fullmatch(value):
                    raise ValueError(f"{what} may hold only {_SCRAM_SAFE.pattern} (it goes into --add-scram)")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secure_bootstrap(self) -> str:
        if not self.secure:
            raise RuntimeError("this broker has no SASL_SSL listener (LocalKafka(secure=True))")
        return f"127.0.0.1:{self.secure_port}"

    @property
    def mtls_bootstrap(self) -> str:
        if not self.mtls:
            raise RuntimeError("this broker has no mutual-TLS listener (LocalKafka(mtls=True))")
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def ca_pem_path(self) -> Path:
        return self._ca().ca_path

    @property
    def client_cert_path(self) -> Path:
        return self._client().cert_path

    @property
    def client_key_path(self) -> Path:
        return self._client().key_path

    def _ca(self) -> LocalCA:
        if self.tls is None:
            if not (self.secure or self.mtls):
                raise RuntimeError("this broker has no TLS listener (LocalKafka(secure=True) or mtls=True)")
            # Made once per broker, kept across restarts: clients keep trusting the same CA.
            self.tls = make_ca(self.workdir / "tls", client_name="tabletopic-client" if self.mtls else None)
        return self.tls

    def _client(self) -> KeyPair:
        client = self._ca().client
        if client is None:
            raise RuntimeError("no client certificate: LocalKafka(mtls=True) makes one")
        return client

    def client_settings(self, listener: str = "sasl_ssl") -> dict[str, str]:
        """librdkafka settings for `listener`: "sasl_ssl", "mtls" or "plaintext"."""
        if listener == "plaintext":
            return {"bootstrap.servers": self.bootstrap}
        if listener == "sasl_ssl":
            return {
                "bootstrap.servers": self.secure_bootstrap,
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password,
                "ssl.ca.location": str(self.ca_pem_path),
            }
        if listener == "mtls":
            return {
                "bootstrap.servers": self.mtls_bootstrap,
                "security.protocol": "SSL",
                "ssl.ca.location": str(self.ca_pem_path),
                "ssl.certificate.location": str(self.client_cert_path),
                "ssl.key.location": str(self.client_key_path),
            }
        raise ValueError(f"unknown listener {listener!r}: plaintext, sasl_ssl or mtls")

    def _listeners(self) -> dict[str, tuple[str, int]]:
        """Listener name -> (security protocol, port), the controller's included."""
        listeners = {"PLAINTEXT": ("PLAINTEXT", self.port), "CONTROLLER": ("PLAINTEXT", self.controller_port)}
        if self.secure:
            listeners["SASL_SSL"] = ("SASL_SSL", self.secure_port)
        if self.mtls:
            listeners["MTLS"] = ("SSL", self.mtls_port)
        return listeners

    def _tls_properties(self) -> dict[str, str]:
        props: dict[str, str] = {}
        if not (self.secure or self.mtls):
            return props
        ca = self._ca()
        keystore = self.workdir / "tls" / "server-keystore.pem"
        keystore.write_text(ca.server.keystore_pem)
        keystore.chmod(0o600)
        stores = {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(ca.ca_path),
        }
        if self.secure:
            name = "listener.name.sasl_ssl"
            props.update({f"{name}.{k}": v for k, v in stores.items()})
            props[f"{name}.sasl.enabled.mechanisms"] = SCRAM_MECHANISM
            # The broker side of SCRAM needs the login module, with no user of its own: it only
            # checks clients against the credentials in the metadata log.
            props[f"{name}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
        if self.mtls:
            name = "listener.name.mtls"
            props.update({f"{name}.{k}": v for k, v in stores.items()})
            props[f"{name}.ssl.client.auth"] = "required"
        return props

    def _properties(self) -> dict[str, str]:
        listeners = self._listeners()
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, (_, port) in listeners.items()),
            "advertised.listeners": ",".join(
                f"{name}://127.0.0.1:{port}" for name, (_, port) in listeners.items() if name != "CONTROLLER"
            ),
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": ",".join(
                f"{name}:{protocol}" for name, (protocol, _) in listeners.items()
            ),
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            **self._share_group_properties(),
            # Tests create a group and expect it to form at once, not after the default 3 s.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            **self._tls_properties(),
        }
        props.update(self.extra_properties)
        return props

    def _share_group_properties(self) -> dict[str, str]:
        if int(self.version.split(".")[0]) < 4:  # 3.9 has no share groups: it would warn of unknown settings
            return {}
        return {"share.coordinator.state.topic.replication.factor": "1", "share.coordinator.state.topic.min.isr": "1"}

    def start(self) -> LocalKafka:
        libs = fetch(version=self.version)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        log4j = self.workdir / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log=self.workdir / "server.log"))
        jvm = [
            java(), "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*",
        ]
        if not (self.workdir / "data" / "meta.properties").exists():  # a restart keeps its log
            scram = (
                # The credentials go into the metadata log with the format: no admin round trip later.
                ["--add-scram", f"{SCRAM_MECHANISM}=[name={self.sasl_username},password={self.sasl_password}]"]
                if self.secure else []
            )
            subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}", "-c", str(config),
                 *scram],
                check=True, stdout=subprocess.DEVNULL,
            )
        with (self.workdir / "stdout.log").open("ab") as out:
            self.process = subprocess.Popen([*jvm, "kafka.Kafka", str(config)], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, START_TIMEOUT_S, "Kafka broker")
            for port in [self.secure_port] * self.secure + [self.mtls_port] * self.mtls:
                wait_for_port(port, START_TIMEOUT_S, "Kafka broker (TLS listener)")
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
    import json
    import sys

    # `python -m tabletopic.local.kafka [--secure] [--mtls] [--version=3.9.2]`: the bootstrap, or the librdkafka
    # settings per listener.
    secure, mtls = "--secure" in sys.argv, "--mtls" in sys.argv
    version = next((a.removeprefix("--version=") for a in sys.argv if a.startswith("--version=")), KAFKA_VERSION)
    kafka = LocalKafka(Path(tempfile.mkdtemp(prefix="tabletopic-kafka-")), secure=secure, mtls=mtls,
                       version=version).start()
    if secure or mtls:
        listeners = ["plaintext"] + ["sasl_ssl"] * secure + ["mtls"] * mtls
        print(json.dumps({name: kafka.client_settings(name) for name in listeners}, indent=2), flush=True)
    else:
        print(kafka.bootstrap, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        kafka.stop()
