"""pyiceberg's private API is reached through one module, tabletopic/catalog/pyiceberg_private.py.

The exact pin makes those calls safe today; the guard keeps them in one place, so the next upgrade
re-checks one file. It reads every module of tabletopic/ with `ast` and refuses, outside the seam:
importing a `_name` from pyiceberg (or a private pyiceberg module), subclassing a pyiceberg class
whose name starts with `_`, reading `Name._private` off a name imported from pyiceberg, and
`getattr`/`setattr`/`hasattr`/`delattr` of a `_private` attribute in a module that uses pyiceberg.
"""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from tabletopic.catalog import pyiceberg_private

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tabletopic"
SEAM = PACKAGE / "catalog" / "pyiceberg_private.py"
BY_NAME = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _from_pyiceberg(module: str | None) -> bool:
    return module is not None and (module == "pyiceberg" or module.startswith("pyiceberg."))


def private_uses(source: str) -> list[str]:
    """Each use of pyiceberg's private API in `source`, as `line: what`."""
    tree = ast.parse(source)
    found: list[str] = []
    imported: set[str] = set()  # local names bound to something of pyiceberg
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _from_pyiceberg(node.module):
            assert node.module is not None
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{node.lineno}: from {node.module} import ...")
            for alias in node.names:
                imported.add(alias.asname or alias.name)
                if _private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _from_pyiceberg(alias.name):
                    imported.add(alias.asname or alias.name.split(".")[0])
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"{node.lineno}: import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                while isinstance(base, ast.Subscript):  # Generic[...] parameters
                    base = base.value
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if _private(name) and isinstance(root, ast.Name) and root.id in imported:
                    found.append(f"{node.lineno}: class {node.name}({name})")
        elif (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
              and node.value.id in imported):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
        elif (imported and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BY_NAME
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            found.append(f"{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_only_the_seam_touches_pyiceberg_private_api() -> None:
    offenders = {
        str(path.relative_to(ROOT)): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != SEAM and (uses := private_uses(path.read_text()))
    }
    assert offenders == {}, f"pyiceberg's private API outside {SEAM.relative_to(ROOT)}: {offenders}"


def test_the_seam_is_where_the_private_calls_are() -> None:
    # Guards the guard: were the seam's own uses invisible to it, the test above would prove nothing.
    assert private_uses(SEAM.read_text())


@pytest.mark.parametrize(
    "source",
    [
        "from pyiceberg.io.pyarrow import _dataframe_to_data_files",
        "from pyiceberg.io.pyarrow import ArrowScan, _check_pyarrow_schema_compatible as check",
        "from pyiceberg._private import thing",
        "import pyiceberg._private",
        "from pyiceberg.table.update import snapshot\nclass P(snapshot._SnapshotProducer['P']): pass",
        "from pyiceberg.catalog import Catalog\nCatalog._convert_schema_if_needed(s)",
        "from pyiceberg.manifest import DataFile\ndef f(d: DataFile) -> int: return getattr(d, '_spec_id', 0)",
    ],
)
def test_the_guard_sees(source: str) -> None:
    assert private_uses(source)


@pytest.mark.parametrize(
    "source",
    [
        "from pyiceberg.table import Table\nclass T(Table): pass",
        "from pyiceberg.catalog import Catalog\nCatalog.load_table",
        "from pyiceberg.table import Table\ndef f(t: Table) -> object: return t.__class__",
        "import os\nos._exit(1)",  # private, but not pyiceberg's
        "import prometheus_client\nx = getattr(m, '_name')",  # a module without pyiceberg
    ],
)
def test_the_guard_lets_pass(source: str) -> None:
    assert private_uses(source) == []


def test_the_seam_names_the_version_installed_and_pinned() -> None:
    """An upgrade of pyiceberg fails here first: re-check the seam (its module doc says what), then bump it."""
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(re.search(r"==([\w.]+)", dep) for dep in pinned if re.match(r"pyiceberg\b", dep))
    assert pin is not None
    assert pyiceberg_private.PYICEBERG_VERSION == pin.group(1) == version("pyiceberg")
