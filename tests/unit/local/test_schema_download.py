"""The Kubernetes schemas for the chart tests come from one wheel, checked against its pinned sha256."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tabletopic.local import k8s_tools


class Recorded(Exception):
    pass


def test_the_schema_wheel_is_downloaded_with_its_hash_required(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def run(command: list[str], **_: Any) -> None:
        seen["command"] = command
        seen["requirements"] = Path(command[command.index("-r") + 1]).read_text()
        raise Recorded

    monkeypatch.setattr(k8s_tools.subprocess, "run", run)
    with pytest.raises(Recorded):
        k8s_tools._extract_kubernetes_schemas(tmp_path, tmp_path / "schemas")
    assert "--require-hashes" in seen["command"]
    assert seen["requirements"].strip() == (
        f"kubernetes-validate=={k8s_tools.KUBERNETES_VALIDATE_VERSION} "
        f"--hash=sha256:{k8s_tools.KUBERNETES_VALIDATE_SHA256}"
    )
