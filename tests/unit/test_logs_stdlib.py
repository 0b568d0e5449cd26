"""Standard logging (pyiceberg, botocore, urllib3, ...) and warnings go through structlog's processors:
the same masking and the same JSON renderer as tabletopic's own lines."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tabletopic import logs

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_stdlib_warning_is_a_masked_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", json_output=True, secrets=[SECRET])
    logging.getLogger("botocore.retryhandler").warning(
        "Retry needed, request signed with aws_secret_access_key=%s", SECRET)
    text = capsys.readouterr().err
    assert SECRET not in text
    [line] = json_lines(text)
    assert line["event"] == f"Retry needed, request signed with aws_secret_access_key={logs.MASK}"
    assert line["level"] == "warning"
    assert line["logger"] == "botocore.retryhandler"
    assert "timestamp" in line


def test_a_stdlib_traceback_is_masked_too(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", json_output=True, secrets=[SECRET])
    try:
        raise RuntimeError(f"refused key {SECRET}")
    except RuntimeError:
        logging.getLogger("pyiceberg.io").exception("write failed")
    text = capsys.readouterr().err
    assert SECRET not in text
    [line] = json_lines(text)
    assert line["event"] == "write failed" and line["level"] == "error"
    assert f"refused key {logs.MASK}" in line["exception"]


def test_warnings_and_the_level_follow_the_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("warning", json_output=True, secrets=[SECRET])
    logging.getLogger("urllib3.connectionpool").info("not shown: below the level")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated property with {SECRET}", DeprecationWarning, stacklevel=1)
    text = capsys.readouterr().err
    assert SECRET not in text
    [line] = json_lines(text)
    assert line["logger"] == "py.warnings" and logs.MASK in line["event"]


def test_configuring_again_replaces_the_handler_and_learnt_secrets_are_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info", json_output=True)
    logs.configure("info", json_output=True)
    logs.mask_also(["secret-from-pyiceberg-yaml"])
    logging.getLogger("pyiceberg").warning("key secret-from-pyiceberg-yaml")
    structlog.get_logger("t").warning("own", value="secret-from-pyiceberg-yaml")
    lines = json_lines(capsys.readouterr().err)
    assert [line["event"] for line in lines] == [f"key {logs.MASK}", "own"]  # once: one handler
    assert lines[1]["value"] == logs.MASK


def test_lines_go_to_the_stderr_of_the_moment_not_a_closed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    logs.configure("info", json_output=True)
    log = structlog.get_logger("tabletopic.test")
    log.info("first.line")
    first.close()  # a test's capture ends, a redirect is undone
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    log.info("second.line")
    assert json.loads(second.getvalue())["event"] == "second.line"
