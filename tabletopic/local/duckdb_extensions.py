"""DuckDB extensions from their PyPI wheels (installed by `make setup`), loaded by path: no network."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def extension_path(name: str, version: str) -> Path:
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"pip install duckdb-extension-{name}=={version}  (or: make setup)")
    return Path(next(iter(spec.submodule_search_locations))) / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
