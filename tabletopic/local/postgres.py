"""A throwaway PostgreSQL server with logical replication on, for the CDC tests (Debian's package).

`LocalPostgres.start` runs `initdb` in a fresh temp dir and `pg_ctl start` with `wal_level=logical` on a free
loopback port (trust auth, user `postgres`); `psql` runs SQL through the package's own client. PostgreSQL
refuses to run as root: as root, both run as the package's `postgres` user (`runuser`), which owns the dir.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tabletopic.local.ports import free_port

INSTALL_HINT = "PostgreSQL is needed: apt-get install -y postgresql"
PACKAGE_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"
START_TIMEOUT_S = 60


def postgres_bin(root: Path = PACKAGE_ROOT) -> Path:
    """The newest `<root>/<major>/bin` holding initdb, pg_ctl and psql; RuntimeError with the apt-get line if none."""
    found = [
        path.parent for path in root.glob("*/bin/initdb")
        if re.fullmatch(r"\d+", path.parent.parent.name)
        and all((path.parent / tool).exists() for tool in ("pg_ctl", "psql"))
    ]
    if not found:
        raise RuntimeError(INSTALL_HINT)
    return max(found, key=lambda bin_dir: int(bin_dir.parent.name))


def as_service_user(command: list[str], euid: int) -> list[str]:
    """`command` as PostgreSQL's own user when we are root (initdb and postgres refuse root); else as is."""
    return ["runuser", "-u", SERVICE_USER, "--", *command] if euid == 0 else command


@dataclass
class LocalPostgres:
    """One PostgreSQL cluster in its own temp dir; `stop()` removes it. Superuser `postgres`, trust auth."""

    port: int = field(default_factory=free_port)
    database: str = "postgres"
    user: str = "postgres"
    bin_dir: Path = field(default_factory=postgres_bin)
    dir: Path | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _run(self, command: list[str], what: str) -> None:
        result = subprocess.run(as_service_user(command, os.geteuid()), capture_output=True, text=True)
        if result.returncode != 0:
            log = self._log_tail()
            raise RuntimeError(f"PostgreSQL {what} failed ({result.returncode}): {result.stderr.strip()}{log}")

    def _log_tail(self) -> str:
        if self.dir is None or not (self.dir / "postgres.log").exists():
            return ""
        return "\nlog:\n" + "\n".join((self.dir / "postgres.log").read_text().splitlines()[-20:])

    def start(self) -> LocalPostgres:
        # Not under pytest's tmp_path: its parents are root's 0700 dirs the postgres user cannot enter.
        self.dir = Path(tempfile.mkdtemp(prefix="tabletopic-postgres-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, user=SERVICE_USER)
        data = self.dir / "data"
        try:
            self._run([str(self.bin_dir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                       "--no-sync", "--no-instructions"], "initdb")
            options = (f"-c wal_level=logical -c listen_addresses={self.host} -p {self.port} -k {self.dir}"
                       " -c fsync=off -c full_page_writes=off")
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "postgres.log"), "-w",
                       "-t", str(START_TIMEOUT_S), "-o", options, "start"], "start")
        except Exception:
            self.stop()
            raise
        return self

    def psql(self, sql: str) -> str:
        """Run `sql` (one or more statements, stopping at the first error) and return psql's unaligned output:
        rows as `a|b` lines, no headers. RuntimeError with PostgreSQL's message on an error."""
        command = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                   "-p", str(self.port), "-U", self.user, "-d", self.database, "-f", "-"]
        result = subprocess.run(command, input=sql, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def stop(self) -> None:
        if self.dir is None:
            return
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
