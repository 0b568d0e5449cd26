"""moto's standalone S3 server on a free loopback port, run as its own process so it can be stopped."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tabletopic.local.ports import free_port, wait_for_port
from tabletopic.local.process import stop_process

ACCESS_KEY = "tabletopic"
SECRET_KEY = "tabletopic-secret"
REGION = "us-east-1"
START_TIMEOUT_S = 30.0


def file_io_properties(endpoint: str, access_key: str, secret_key: str, region: str) -> dict[str, str]:
    """pyiceberg FileIO properties for a loopback S3-compatible server (path-style addressing)."""
    return {
        "s3.endpoint": endpoint,
        "s3.access-key-id": access_key,
        "s3.secret-access-key": secret_key,
        "s3.region": region,
        "s3.path-style-access": "true",
    }


@dataclass
class LocalS3:
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties that point at this server."""
        return file_io_properties(self.endpoint, ACCESS_KEY, SECRET_KEY, REGION)

    def start(self) -> LocalS3:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("moto's server is needed: pip install -e '.[dev]'") from exc
        with (self.workdir / "moto.log").open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, START_TIMEOUT_S, "moto S3 server")
        return self

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name=REGION,
        )
        client.create_bucket(Bucket=name)

    def stop(self) -> None:
        stop_process(self.process, timeout_s=15)
        self.process = None
