"""What the benchmarks measure about processes and the machine, read from /proc: no dependencies.

- CPU: user + system seconds of a process tree, each live process's own time plus the time of
  its children it has already reaped (`cutime`, `cstime`), so a worker pool is counted whole.
- Memory: the sum over the tree of the resident set (VmRSS), sampled, and each process's own
  peak (VmHWM), which the kernel keeps exactly.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, parents first."""
    pids = [pid]
    for parent in pids:  # grows while it is walked: breadth first
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                pids.extend(int(child) for child in children.read_text().split())
    return pids


@dataclass
class ProcessSample:
    pid: int
    cpu_s: float  # own user + system, plus reaped children's
    rss_bytes: int
    hwm_bytes: int  # the process's peak resident set so far


def sample_process(pid: int) -> ProcessSample | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone between the listing and now
        return None
    # Fields after the command name (which may hold spaces): state is field 3, utime 14 … cstime 17.
    fields = stat.rsplit(")", 1)[1].split()
    cpu = sum(int(v) for v in fields[11:15]) / _TICKS
    rss = hwm = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return ProcessSample(pid, cpu, rss, hwm)


@dataclass
class TreeSample:
    at: float  # time.time()
    cpu_s: float
    rss_bytes: int  # sum of VmRSS now
    hwm_bytes: int  # sum of each process's VmHWM
    max_process_hwm_bytes: int  # the largest single process's VmHWM
    processes: int


def sample_tree(pid: int) -> TreeSample:
    samples = [s for s in map(sample_process, process_tree(pid)) if s is not None]
    return TreeSample(
        at=time.time(),
        cpu_s=sum(s.cpu_s for s in samples),
        rss_bytes=sum(s.rss_bytes for s in samples),
        hwm_bytes=sum(s.hwm_bytes for s in samples),
        max_process_hwm_bytes=max((s.hwm_bytes for s in samples), default=0),
        processes=len(samples),
    )


@dataclass
class TreeMonitor:
    """Samples a process tree on a thread: the peak of the summed resident set, and the last sample."""

    pid: int
    interval_s: float = 0.2
    peak_rss_bytes: int = 0
    peak_hwm_bytes: int = 0
    peak_process_hwm_bytes: int = 0
    last: TreeSample | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeMonitor:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"monitor-{self.pid}")
        self._thread.start()
        return self

    def sample(self) -> TreeSample:
        current = sample_tree(self.pid)
        if current.processes:
            self.last = current
            self.peak_rss_bytes = max(self.peak_rss_bytes, current.rss_bytes)
            self.peak_hwm_bytes = max(self.peak_hwm_bytes, current.hwm_bytes)
            self.peak_process_hwm_bytes = max(self.peak_process_hwm_bytes, current.max_process_hwm_bytes)
        return current

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def machine() -> dict[str, str]:
    """The machine in a few lines: lscpu's summary, memory, kernel, Python."""
    facts: dict[str, str] = {}
    wanted = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)", "CPU max MHz",
              "L2 cache", "L3 cache", "Hypervisor vendor")
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in wanted:
            facts[key.strip()] = value.strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["Memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    facts["Kernel"] = platform.release()
    facts["Python"] = platform.python_version()
    with contextlib.suppress(OSError):
        facts["Load average (1, 5, 15 min) at start"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return facts
