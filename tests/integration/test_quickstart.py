"""`tabletopic quickstart` as a new user sees it on a terminal: a walkthrough in five steps, the audit,
and three next commands that work while the broker it started is still up; no raw librdkafka lines
(`%4|...|GETPID|...`) and no structlog lines on the terminal."""

from __future__ import annotations

import os
import pty
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import duckdb

from tabletopic.local.duckdb_extensions import extension_path

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 2_000
DEADLINE_S = 240.0
RAW_LIBRDKAFKA = re.compile(r"^%\d\|")
SECTIONS = ("[1/5] Kafka broker", "[2/5] Sample events", "[3/5] Writer", "[4/5] Table demo.events",
            "[5/5] Audit", "Next, try:")


def _lines_into(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


def _read_until(lines: queue.Queue[str | None], seen: list[str], marker: str, deadline: float) -> None:
    while not any(marker in line for line in seen):
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, "the quickstart ended before printing " + repr(marker) + ":\n" + "\n".join(seen)
        seen.append(line)


def _command_after(seen: list[str], words: str) -> list[str]:
    [line] = [line for line in seen if words in line]
    return shlex.split(line)


def _duckdb_sql(seen: list[str]) -> str:
    [line] = [line for line in seen if "duckdb.sql(" in line]
    match = re.search(r'duckdb\.sql\(\\"(.*)\\"\)\.show\(\)', line)
    assert match, line
    return match.group(1)


def test_the_quickstart_walks_through_and_its_next_commands_work(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    terminal, stdin = pty.openpty()  # a terminal on stdin: the quickstart keeps its broker up for the next commands
    with subprocess.Popen(
        [sys.executable, "-m", "tabletopic", "quickstart", "--records", str(RECORDS), "--warehouse", str(warehouse)],
        cwd=ROOT, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:  # closes the pipes
        seen, errors = _walk_through(process, stdin, terminal, warehouse)
    assert "stopping the broker." in seen
    for line in seen + errors:
        assert not RAW_LIBRDKAFKA.match(line), line
        assert '"event":' not in line, line  # structlog's lines go to the log file
    assert (warehouse / "quickstart.log").read_text()


def _walk_through(process: subprocess.Popen[str], stdin: int, terminal: int,
                  warehouse: Path) -> tuple[list[str], list[str]]:
    """Follow the quickstart to its prompt, run the next commands, press Enter: (stdout, stderr) lines."""
    os.close(stdin)
    assert process.stdout is not None and process.stderr is not None
    out: queue.Queue[str | None] = queue.Queue()
    err: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines_into, args=(process.stdout, out), daemon=True).start()
    threading.Thread(target=_lines_into, args=(process.stderr, err), daemon=True).start()
    seen: list[str] = []
    try:
        _read_until(out, seen, "press Enter here to stop it", time.monotonic() + DEADLINE_S)
        text = "\n".join(seen)
        positions = [text.find(section) for section in SECTIONS]
        assert -1 not in positions and positions == sorted(positions), text
        assert re.search(r"bootstrap servers 127\.0\.0\.1:\d+", text), text
        assert f"wrote {RECORDS} JSON events" in text
        assert f"audit: OK: {RECORDS} rows for {RECORDS} records" in text
        assert f"its log: {warehouse / 'quickstart.log'}" in text

        # 1. DuckDB, with the extension from its wheel (the printed line lets DuckDB fetch it).
        con = duckdb.connect()
        con.execute("SET autoinstall_known_extensions=false")
        for extension in ("avro", "iceberg"):  # iceberg needs avro (its manifests)
            con.execute(f"LOAD '{extension_path(extension, duckdb.__version__)}'")
        by_page = con.execute(_duckdb_sql(seen)).fetchall()
        assert sum(events for _page, events, _amount in by_page) == RECORDS
        # 2. and 3., as printed, against the broker the quickstart keeps up.
        status = subprocess.run(_command_after(seen, " status --config "), cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        assert "demo.events" in status.stdout
        backfill = subprocess.run(_command_after(seen, " backfill --config "), cwd=ROOT, capture_output=True,
                                  text=True, timeout=120)
        assert backfill.returncode == 0, backfill.stderr
        assert f"backfill done: {RECORDS} records into demo.events_copy" in backfill.stdout

        os.write(terminal, b"\n")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(terminal)
    while (line := out.get(timeout=10)) is not None:
        seen.append(line)
    errors: list[str] = []
    while (line := err.get(timeout=10)) is not None:
        errors.append(line)
    return seen, errors
