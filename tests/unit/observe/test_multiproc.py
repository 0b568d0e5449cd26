"""A PROMETHEUS_MULTIPROC_DIR set beforehand is checked, not trusted: every file in it becomes a metric."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tabletopic.exceptions import ConfigError
from tabletopic.observe import multiproc


def test_a_private_folder_of_ours_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv(multiproc.ENV, str(folder))
    assert multiproc.prepare() is None  # used as it is, and not removed at the end: not ours to remove


@pytest.mark.parametrize(("make", "says"), [
    (lambda p: (p.mkdir(), p.chmod(0o777)), "may be written by other users (mode 777)"),
    (lambda p: (p.mkdir(), p.chmod(0o770)), "may be written by other users (mode 770)"),
    (lambda p: (p.parent.joinpath("real").mkdir(mode=0o700), p.symlink_to(p.parent / "real")), "is a symbolic link"),
    (lambda p: p.write_text("x"), "is not a folder"),
    (lambda p: None, "cannot be used: No such file or directory"),
])
def test_an_unsafe_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make, says: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "metrics"
    make(folder)
    monkeypatch.setenv(multiproc.ENV, str(folder))
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR") as error:
        multiproc.prepare()
    assert says in str(error.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir(mode=0o700)
    os.chown(folder, 12345, -1)
    monkeypatch.setenv(multiproc.ENV, str(folder))
    with pytest.raises(ConfigError, match="owned by user 12345"):
        multiproc.prepare()


def test_run_refuses_a_world_writable_metrics_folder_with_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    done = subprocess.run([sys.executable, "-m", "tabletopic", "run", "--bootstrap-servers", "127.0.0.1:1",
                           "--topic", "t", "--table", "ns.t"], env={**os.environ, multiproc.ENV: str(folder)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"PROMETHEUS_MULTIPROC_DIR: {folder} may be written by other users" in done.stderr
    assert not list(folder.iterdir())  # nothing written into it


def test_a_removed_folder_is_no_longer_named_for_the_next_run_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(multiproc.ENV, raising=False)
    folder = multiproc.prepare()
    assert folder is not None and os.environ[multiproc.ENV] == folder
    multiproc.remove(folder)
    assert multiproc.ENV not in os.environ
    again = multiproc.prepare()  # a command run again in process makes a fresh folder, not a dead one
    assert again is not None and os.path.isdir(again)
    multiproc.remove(again)
