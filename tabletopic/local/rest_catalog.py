"""Apache Iceberg's REST catalog server on loopback, over an S3 warehouse (moto's server).

Maven Central has no runnable build of the `iceberg-rest-fixture` image's jar, but it has its
parts: `iceberg-open-api:<v>:test-fixtures` holds `RESTCatalogServer`, and `iceberg-core`'s
tests jar the servlet behind it. Step 1 (`fetch`) copies them with their dependencies into
the cache once; step 2 runs `RESTCatalogServer` with `CATALOG_*` environment variables (each
becomes a catalog property: `__` → `-`, `_` → `.`), its catalog in a SQLite file.

The server binds every interface (it has no host setting); tests only ever reach it on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tabletopic.local.jvm import cache_root, java, maven
from tabletopic.local.ports import free_port
from tabletopic.local.process import http_answers, stop_process, wait_until_ready
from tabletopic.local.s3 import REGION

ICEBERG_VERSION = "1.10.1"
START_TIMEOUT_S = 60.0

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tabletopic.local</groupId><artifactId>rest-catalog-fetch</artifactId><version>1</version>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""
_DEPENDENCIES = [
    ("org.apache.iceberg", "iceberg-open-api", ICEBERG_VERSION, "test-fixtures"),
    ("org.apache.iceberg", "iceberg-core", ICEBERG_VERSION, None),
    ("org.apache.iceberg", "iceberg-core", ICEBERG_VERSION, "tests"),
    ("org.apache.iceberg", "iceberg-aws", ICEBERG_VERSION, None),
    ("org.apache.iceberg", "iceberg-aws-bundle", ICEBERG_VERSION, None),
    # Iceberg 1.10's servlet is written against Jetty 11 (jakarta.servlet 5).
    ("org.eclipse.jetty", "jetty-server", "11.0.25", None),
    ("org.eclipse.jetty", "jetty-servlet", "11.0.25", None),
    ("org.xerial", "sqlite-jdbc", "3.49.1.0", None),
    ("org.apache.hadoop", "hadoop-client-api", "3.4.1", None),
    ("org.apache.hadoop", "hadoop-client-runtime", "3.4.1", None),
    ("org.slf4j", "slf4j-simple", "2.0.17", None),
]


def libs() -> Path:
    return cache_root() / f"iceberg-rest-{ICEBERG_VERSION}" / "libs"


def fetch() -> Path:
    """Copy the server's jars into the cache (a no-op when they are there)."""
    target = libs()
    if (target / f"iceberg-open-api-{ICEBERG_VERSION}-test-fixtures.jar").exists():
        return target
    lines = []
    for group, artifact, version, classifier in _DEPENDENCIES:
        extra = f"<classifier>{classifier}</classifier>" if classifier else ""
        lines.append(f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
                     f"<version>{version}</version>{extra}</dependency>")
    with tempfile.TemporaryDirectory() as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(_POM.format(dependencies="\n".join(lines)))
        staging = target.with_name("libs.partial")
        maven("-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
              "-DincludeScope=runtime")
        staging.rename(target)
    return target


class S3Server(Protocol):
    """What the catalog needs of its S3 server: moto's (`LocalS3`) or another (`LocalS3Proxy`)."""

    @property
    def endpoint(self) -> str: ...

    def catalog_properties(self) -> dict[str, str]: ...

    def create_bucket(self, name: str) -> None: ...


@dataclass
class LocalRestCatalog:
    workdir: Path
    s3: S3Server
    bucket: str = "warehouse"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.bucket}/wh"

    def client_properties(self) -> dict[str, str]:
        """pyiceberg catalog properties (tabletopic's `catalog:` section) for this catalog."""
        return {"type": "rest", "uri": self.uri, "warehouse": self.warehouse, **self.s3.catalog_properties()}

    def start(self) -> LocalRestCatalog:
        jars = fetch()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.s3.create_bucket(self.bucket)
        s3 = self.s3.catalog_properties()
        env = {
            **os.environ,
            "CATALOG_REST_PORT": str(self.port),
            "CATALOG_WAREHOUSE": self.warehouse,
            "CATALOG_URI": f"jdbc:sqlite:file:{self.workdir / 'catalog.db'}",
            "CATALOG_JDBC_SCHEMA__VERSION": "V1",
            "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
            "CATALOG_S3_ENDPOINT": self.s3.endpoint,
            "CATALOG_S3_PATH__STYLE__ACCESS": "true",
            "CATALOG_CLIENT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": s3["s3.access-key-id"],
            "AWS_SECRET_ACCESS_KEY": s3["s3.secret-access-key"],
            "AWS_REGION": REGION,
        }
        command = [java(), "-Xmx512m", "-cp", f"{jars}/*", "org.apache.iceberg.rest.RESTCatalogServer"]
        with (self.workdir / "rest.log").open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(self.process, lambda: http_answers(f"{self.uri}/v1/config"), START_TIMEOUT_S,
                             "the REST catalog", self.workdir / "rest.log", interval_s=0.2)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
