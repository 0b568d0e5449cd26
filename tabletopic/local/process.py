"""Waiting for the child processes of the local services to be ready, and stopping them."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path


def http_answers(url: str, containing: bytes = b"") -> bool:
    """True when `url` answers 200 (with `containing` in its body, spaces ignored)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and containing in response.read().replace(b" ", b"")
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout_s: float, what: str, log: Path,
    interval_s: float = 0.3,
) -> None:
    """Poll `ready` until it holds; RuntimeError if the process exits first, TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited; see {log}")
        if ready():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what} did not start within {timeout_s:.0f}s; see {log}")


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
