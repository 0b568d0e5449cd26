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

from tabletopic.local.jvm import cache_root, maven
from tabletopic.local.ports import free_port

INSTALL_HINT = "PostgreSQL is needed: apt-get install -y postgresql"
PACKAGE_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"
START_TIMEOUT_S = 60
# PostgreSQL's JDBC driver for Spark's Iceberg JdbcCatalog (Trino's Iceberg plugin carries its own); the one
# Debezium's connector ships.
JDBC_DRIVER_VERSION = "42.7.11"


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

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run `sql` (one or more statements, stopping at the first error) in `database` (default: the server's
        own) and return psql's unaligned output: rows as `a|b` lines, no headers. RuntimeError with PostgreSQL's
        message on an error."""
        command = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                   "-p", str(self.port), "-U", self.user, "-d", database or self.database, "-f", "-"]
        result = subprocess.run(command, input=sql, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> str:
        """A new, empty database `name` on this server (lower-case letters, digits and _); returns its name."""
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            raise ValueError(f"database {name!r}: lower-case letters, digits and _, starting with a letter")
        self.psql(f"CREATE DATABASE {name}")
        return name

    def sqlalchemy_uri(self, database: str, **params: str) -> str:
        """SQLAlchemy's URL of `database` through psycopg 3 (pyiceberg's SQL catalog); `params` are libpq's."""
        query = "&".join(f"{key}={value}" for key, value in params.items())
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}" + (f"?{query}" if query else "")

    def jdbc_url(self, database: str) -> str:
        """The PostgreSQL JDBC driver's URL of `database` (Iceberg's JdbcCatalog, Trino's JDBC catalog)."""
        return f"jdbc:postgresql://{self.host}:{self.port}/{database}"

    def server_pids(self) -> list[int]:
        """The postmaster and every process it forked (backends, checkpointer, WAL writer...): stopping the
        postmaster alone leaves open connections served by their backends."""
        if self.dir is None:
            raise RuntimeError("PostgreSQL is not running")
        postmaster = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        return [postmaster, *children_of(postmaster)]

    def client_backends(self, database: str) -> list[int]:
        """The backends serving connections to `database`, by their process titles
        (`postgres: <user> <database> <host>(<port>) <state>`)."""
        if self.dir is None:
            raise RuntimeError("PostgreSQL is not running")
        found = []
        for pid in self.server_pids()[1:]:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").split()
            except FileNotFoundError:
                continue
            if len(title) >= 4 and title[0] == "postgres:" and title[2] == database and "(" in title[3]:
                found.append(pid)
        return found

    def stop(self) -> None:
        if self.dir is None:
            return
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


def is_running(pid: int) -> bool:
    """Whether `pid` exists and has not exited (a zombie waiting for its parent to reap it has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def children_of(parent: int, proc: Path = Path("/proc")) -> list[int]:
    """The pids whose parent is `parent`, from /proc/<pid>/stat (field 4; the name in field 2 may hold spaces)."""
    found = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return sorted(found)


def jdbc_driver() -> Path:
    return cache_root() / f"postgresql-jdbc-{JDBC_DRIVER_VERSION}" / f"postgresql-{JDBC_DRIVER_VERSION}.jar"


def fetch_jdbc_driver() -> Path:
    """org.postgresql:postgresql from Maven Central, once, into the cache."""
    jar = jdbc_driver()
    if jar.exists():
        return jar
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        maven("dependency:copy", f"-Dartifact=org.postgresql:postgresql:{JDBC_DRIVER_VERSION}",
              f"-DoutputDirectory={work}")
        (Path(work) / jar.name).rename(jar)
    return jar
