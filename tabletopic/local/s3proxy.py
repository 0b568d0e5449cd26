"""S3Proxy (Maven Central, `org.gaul:s3proxy`) on a free loopback port: an S3 API in front of a directory.

Platform teams run it on premises to give S3 clients a file system or another blob store. Step 1 (`fetch`)
copies its one self-contained jar (`jar-with-dependencies`) into the cache; step 2 (`LocalS3Proxy.start`)
runs it with jclouds' `filesystem-nio2` backend: a bucket is a directory under `workdir/data`, an object a
file. Its own credentials, checked on every request (AWS signature v2 or v4).

The same surface as `LocalS3` (moto): `endpoint`, `catalog_properties()`, `create_bucket()`, `stop()`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabletopic.local.jvm import cache_root, java, maven
from tabletopic.local.ports import accepts_connections, free_port
from tabletopic.local.process import stop_process, wait_until_ready
from tabletopic.local.s3 import file_io_properties

# The newest release on Maven Central; its classes are built for Java 17.
S3PROXY_VERSION = "4.1.0"
ACCESS_KEY = "s3proxy"
SECRET_KEY = "s3proxy-secret"
REGION = "us-east-1"  # S3Proxy signs with whatever region the client names; the clients need one
START_TIMEOUT_S = 60.0


def jar() -> Path:
    return cache_root() / f"s3proxy-{S3PROXY_VERSION}" / f"s3proxy-{S3PROXY_VERSION}-jar-with-dependencies.jar"


def fetch() -> Path:
    """Copy S3Proxy's jar into the cache (a no-op when it is there)."""
    target = jar()
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        maven("dependency:copy", f"-Dartifact=org.gaul:s3proxy:{S3PROXY_VERSION}:jar:jar-with-dependencies",
              f"-DoutputDirectory={work}")
        (Path(work) / target.name).rename(target)
    return target


@dataclass
class LocalS3Proxy:
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties that point at this server."""
        return file_io_properties(self.endpoint, ACCESS_KEY, SECRET_KEY, REGION)

    def _properties(self) -> str:
        return "\n".join([
            f"s3proxy.endpoint={self.endpoint}",  # binds 127.0.0.1 only
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={ACCESS_KEY}",
            f"s3proxy.credential={SECRET_KEY}",
            "jclouds.provider=filesystem-nio2",
            f"jclouds.filesystem.basedir={self.workdir / 'data'}",
            "",
        ])

    def start(self) -> LocalS3Proxy:
        server = jar()
        if not server.exists():
            raise RuntimeError(f"S3Proxy {S3PROXY_VERSION} is missing: "
                               ".venv/bin/python -c 'from tabletopic.local import s3proxy; s3proxy.fetch()'")
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        properties = self.workdir / "s3proxy.properties"
        properties.write_text(self._properties())
        log = self.workdir / "s3proxy.log"
        # Warnings and errors only: at INFO a busy test run fills the log with request lines.
        env = {**os.environ, "LOG_LEVEL": "warn"}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [java(), "-Xmx512m", "-jar", str(server), "--properties", str(properties)],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            wait_until_ready(self.process, lambda: accepts_connections(self.port), START_TIMEOUT_S,
                             "S3Proxy", log, interval_s=0.2)
        except TimeoutError:
            self.stop()
            raise
        return self

    def client(self) -> Any:  # boto3's clients are made at run time, untyped
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        stop_process(self.process, timeout_s=15)
        self.process = None
