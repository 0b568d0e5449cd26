"""A pool's supervisor supervises: it loads no catalog, Arrow, Kafka or Avro library (issue 22: a sidecar's
footprint). Run in a fresh interpreter, `tabletopic run --workers 2` goes through everything the supervisor does
before its loop (config, HTTP server, maintenance process handle) and reports what it has imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("pyiceberg", "pyarrow", "confluent_kafka", "fastavro", "boto3", "polars", "numpy", "sqlalchemy")

SUPERVISOR_UP_TO_ITS_LOOP = """
import json, sys
from tabletopic import supervisor
from tabletopic.compaction import process

from tabletopic.observe import health, http
answers = []
serving = http.make_server

def make_server(host, port, endpoints, *args):
    answers.append(endpoints)
    return serving(host, port, endpoints, *args)

http.make_server = make_server

def report(self):
    for endpoints in answers:  # what the HTTP server answers, as it would a request
        endpoints.healthz(), endpoints.readyz(), endpoints.metrics()
    assert "access_denied" in health.readiness({}, 2, None, None, {"shop.orders": "access_denied"})
    print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)))
    return 0

supervisor.Supervisor.run = report  # the loop would start the workers: stop just before
process.MaintenanceProcess.start = lambda self: self  # its child is spawned: a fresh interpreter of its own
process.MaintenanceProcess.stop = lambda self, timeout_s=5.0: None
from tabletopic.cli import main
sys.exit(main(sys.argv[1:]))
"""


def supervisor_imports(tmp_path: Path, *flags: str) -> list[str]:
    script = f"HEAVY = {HEAVY!r}\n{SUPERVISOR_UP_TO_ITS_LOOP}"
    env = {**os.environ, "TABLETOPIC_HTTP__PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script, "run", "--bootstrap-servers", "127.0.0.1:9", "--topic", "orders",
         "--table", "shop.orders", "--warehouse", str(tmp_path / "warehouse"), "--workers", "2", *flags],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_pool_supervisor_imports_no_heavy_library(tmp_path: Path) -> None:
    assert supervisor_imports(tmp_path) == []


def test_a_bad_config_still_fails_in_the_supervisor_before_any_worker(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tabletopic", "run", "--bootstrap-servers", "127.0.0.1:9", "--topic", "orders",
         "--table", "shop.orders", "--format", "avro", "--workers", "2"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "schema_registry" in done.stderr
