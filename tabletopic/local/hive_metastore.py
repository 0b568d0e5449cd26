"""A standalone Hive Metastore (Apache Hive 3.1.3) on loopback, its database an embedded Derby, its warehouse
on S3 (moto's server), for pyiceberg's Hive catalog (`type: hive`) and the engines that read through it.

Step 1 (`fetch`, once): Maven Central's `hive-standalone-metastore:<v>:tar.gz:bin` is the
metastore's own distribution; its `lib/` and Derby schema scripts are kept. It runs on a Hadoop
installation's jars, so `hadoop-common` and `hadoop-aws` (S3A: the metastore makes the directories of
the databases and tables it is given) come from Maven Central beside it, with the AWS SDK's S3 module
instead of its 300 MB bundle. Then Hive's schema tool lays out an empty metastore database once, kept
as a template: laying it out takes ~10-40 s, copying it none.
Step 2 (`LocalHiveMetastore.start`): a copy of the template, `HiveMetaStore` serving thrift on a free port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from tabletopic.local.jvm import cache_root, java, maven
from tabletopic.local.ports import accepts_connections, free_port
from tabletopic.local.process import stop_process, wait_until_ready
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3

# Hive 4.0.1 runs here too, but it dropped the thrift call `get_table` that pyiceberg 0.12 (and the Hive 2.3
# client Spark's Iceberg runtime uses) make for every table: Hive 3.1, the line both talk to, is the one.
HIVE_VERSION = "3.1.3"
HADOOP_VERSION = "3.3.6"  # Hadoop's newest 3.3, whose own guava is shaded away from Hive's
AWS_SDK_VERSION = "1.12.367"  # the AWS SDK hadoop-aws 3.3.6 is built with
START_TIMEOUT_S = 180.0
# A lock left by a client killed mid-commit is given up after this long without a heartbeat (Hive's default
# is 300 s, checked every 180 s); pyiceberg sends none, so this is also how long one commit may hold it.
LOCK_TIMEOUT_S = 60
REAPER_INTERVAL_S = 5

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tabletopic.local</groupId><artifactId>hive-metastore-hadoop-fetch</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-common</artifactId>
      <version>{hadoop}</version>
      <exclusions><exclusion><groupId>jdk.tools</groupId><artifactId>jdk.tools</artifactId></exclusion></exclusions>
    </dependency>
    <!-- Only their own classes: Warehouse.mkdirs names HDFS's types whatever the file system. -->
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-hdfs-client</artifactId>
      <version>{hadoop}</version><exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-hdfs</artifactId>
      <version>{hadoop}</version><exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-aws</artifactId><version>{hadoop}</version>
      <exclusions><exclusion><groupId>com.amazonaws</groupId><artifactId>aws-java-sdk-bundle</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency><groupId>com.amazonaws</groupId><artifactId>aws-java-sdk-s3</artifactId><version>{aws}</version>
    </dependency>
  </dependencies>
</project>
"""
# Hadoop's logging bindings would compete with the metastore's log4j2; its own guava is older than Hive's.
_LEFT_OUT = "log4j,reload4j,slf4j-log4j12,slf4j-reload4j,guava"
_DERBY_SCRIPTS = "scripts/metastore/upgrade/derby/"


def home() -> Path:
    return cache_root() / f"hive-metastore-{HIVE_VERSION}"


def _template() -> Path:
    return home() / "derby-template"


def classpath(conf_dir: Path) -> str:
    # The metastore's own jars first: where Hadoop brings another version of one, Hive's wins.
    return os.pathsep.join([str(conf_dir), f"{home() / 'lib'}/*", f"{home() / 'hadoop'}/*"])


def fetch() -> Path:
    """Download the metastore and Hadoop's jars, lay out the template database (a no-op when done)."""
    target = home()
    if (_template() / "service.properties").exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        repository = Path(work) / "m2"  # the 80 MB tarball is not kept twice
        maven("dependency:copy",
              f"-Dartifact=org.apache.hive:hive-standalone-metastore:{HIVE_VERSION}:tar.gz:bin",
              f"-DoutputDirectory={work}", f"-Dmaven.repo.local={repository}")
        _unpack(Path(work) / f"hive-standalone-metastore-{HIVE_VERSION}-bin.tar.gz", staging)
        pom = Path(work) / "pom.xml"
        pom.write_text(_POM.format(hadoop=HADOOP_VERSION, aws=AWS_SDK_VERSION))
        maven("-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={staging / 'hadoop'}",
              "-DincludeScope=runtime", f"-DexcludeArtifactIds={_LEFT_OUT}")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    _init_template()
    return target


def _unpack(archive: Path, into: Path) -> None:
    prefix = f"apache-hive-metastore-{HIVE_VERSION}-bin/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.removeprefix(prefix).startswith(("lib/", _DERBY_SCRIPTS))]
        tar.extractall(into, members=members, filter="data")
    unpacked = into / prefix
    for child in unpacked.iterdir():
        child.rename(into / child.name)
    unpacked.rmdir()


def _init_template() -> None:
    """`schematool -initSchema -dbType derby` into a new database beside the jars."""
    partial = _template().with_name("derby-template.partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory() as work:
        conf = Path(work) / "conf"
        conf.mkdir()
        (conf / "metastore-site.xml").write_text(_site_xml(_database_settings(partial)))
        log = Path(work) / "schematool.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [java(), "-Xmx512m", "-cp", classpath(conf),
                 "org.apache.hadoop.hive.metastore.tools.MetastoreSchemaTool",
                 "-initSchema", "-dbType", "derby"],
                env={**os.environ, "METASTORE_HOME": str(home())}, stdout=out, stderr=subprocess.STDOUT,
                timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"Hive's schema tool failed ({done.returncode}):\n{log.read_text()[-4000:]}")
    partial.rename(_template())


def _database_settings(database: Path) -> dict[str, str]:
    return {
        "javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={database};create=true",
        "javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.EmbeddedDriver",
    }


def _site_xml(settings: dict[str, str]) -> str:
    properties = "\n".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>"
                           for k, v in settings.items())
    return f"<?xml version=\"1.0\"?>\n<configuration>\n{properties}\n</configuration>\n"


@dataclass
class LocalHiveMetastore:
    workdir: Path
    s3: LocalS3
    bucket: str = "hive"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"thrift://127.0.0.1:{self.port}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.bucket}/wh"

    def client_properties(self) -> dict[str, str]:
        """pyiceberg catalog properties (tabletopic's `catalog:` section) for this metastore."""
        return {"type": "hive", "uri": self.uri, "warehouse": self.warehouse, **self.s3.catalog_properties()}

    def settings(self) -> dict[str, str]:
        return {
            **_database_settings(self.workdir / "db"),
            "metastore.thrift.port": str(self.port),
            "metastore.warehouse.dir": self.warehouse,
            # The distribution's event cleaner, and the housekeeper that gives up the locks of dead clients: without
            # it (Hive runs it only beside its compactor) a writer killed mid-commit holds its table's lock forever.
            "metastore.task.threads.always": "org.apache.hadoop.hive.metastore.events.EventCleanerTask,"
                                             "org.apache.hadoop.hive.metastore.txn.AcidHouseKeeperService",
            "metastore.timedout.txn.reaper.interval": f"{REAPER_INTERVAL_S}s",
            "metastore.expression.proxy": "org.apache.hadoop.hive.metastore.DefaultPartitionExpressionProxy",
            "metastore.txn.timeout": f"{LOCK_TIMEOUT_S}s",
            # Iceberg's documented setting for a metastore it commits to: schema changes are Iceberg's to check.
            "metastore.disallow.incompatible.col.type.changes": "false",
            # The directories of s3:// locations through S3A, at moto.
            "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "fs.s3a.endpoint": self.s3.endpoint,
            "fs.s3a.endpoint.region": REGION,
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": "false",
            "fs.s3a.access.key": ACCESS_KEY,
            "fs.s3a.secret.key": SECRET_KEY,
            "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        }

    def start(self) -> LocalHiveMetastore:
        fetch()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.s3.create_bucket(self.bucket)
        shutil.rmtree(self.workdir / "db", ignore_errors=True)
        shutil.copytree(_template(), self.workdir / "db")
        conf = self.workdir / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "metastore-site.xml").write_text(_site_xml(self.settings()))
        log = self.workdir / "metastore.log"
        command = [java(), "-Xmx512m", "-cp", classpath(conf), "org.apache.hadoop.hive.metastore.HiveMetaStore"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "METASTORE_HOME": str(home())})
        try:
            wait_until_ready(self.process, lambda: accepts_connections(self.port), START_TIMEOUT_S,
                             "the Hive Metastore", log, interval_s=0.5)
        except TimeoutError:
            self.stop()
            raise
        return self

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP the metastore while inside: its port still accepts connections, nothing answers."""
        assert self.process is not None, "the metastore is not running"
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
