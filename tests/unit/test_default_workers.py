"""The default number of workers is the CPUs the process may use: its affinity, capped by the cgroup's
CPU quota (a 2-CPU pod on a 64-core node runs 2 workers, not 64)."""

from __future__ import annotations

import os
from pathlib import Path

from tabletopic.config import _read_or_none, cgroup_cpu_limits, default_workers, usable_cpus


def test_the_quota_caps_the_affinity() -> None:
    assert usable_cpus(64, ["200000 100000"]) == 2
    assert usable_cpus(64, ["150000 100000"]) == 2  # 1.5 CPUs: two workers, each busy part of the time
    assert usable_cpus(64, ["5000 100000"]) == 1
    assert usable_cpus(2, ["800000 100000"]) == 2  # the affinity is the tighter
    assert usable_cpus(64, ["max 100000"]) == 64
    assert usable_cpus(64, ["400000 100000", "300000 100000"]) == 3  # a parent's quota binds too
    assert usable_cpus(64, ["-1 100000"]) == 64  # cgroup v1: no quota
    assert usable_cpus(64, ["", "garbage"]) == 64
    assert usable_cpus(0, []) == 1


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quotas_are_read_from_the_process_cgroup_up(tmp_path: Path) -> None:
    write(tmp_path / "kubepods" / "pod1" / "cpu.max", "200000 100000\n")
    write(tmp_path / "kubepods" / "cpu.max", "max 100000\n")
    write(tmp_path / "cpu.max", "800000 100000\n")
    limits = cgroup_cpu_limits("0::/kubepods/pod1\n", _read_or_none, root=tmp_path)
    assert limits == ["200000 100000", "max 100000", "800000 100000"]
    assert usable_cpus(64, limits) == 2


def test_a_container_in_its_own_cgroup_namespace_reads_the_root(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "300000 100000\n")
    assert usable_cpus(64, cgroup_cpu_limits("0::/\n", _read_or_none, root=tmp_path)) == 3


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "250000\n")
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    own = "4:memory:/x\n3:cpu,cpuacct:/\n2:cpuset:/\n"
    assert cgroup_cpu_limits(own, _read_or_none, root=tmp_path) == ["250000 100000"]


def test_no_cgroup_files_leave_the_affinity(tmp_path: Path) -> None:
    assert cgroup_cpu_limits("0::/a/b\n", _read_or_none, root=tmp_path) == []


def test_this_machine() -> None:
    assert 1 <= default_workers() <= len(os.sched_getaffinity(0))
