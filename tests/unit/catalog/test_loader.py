"""`catalog: {name: prod}` opens pyiceberg's `prod` catalog (from .pyiceberg.yaml or PYICEBERG_CATALOG__*
variables) as pyiceberg would; an unknown name with nothing else to go on is refused, never replaced by a
local SQLite catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tabletopic.catalog.loader import catalog_properties, named_catalog, open_catalog
from tabletopic.config import CatalogConfig
from tabletopic.exceptions import ConfigError


@pytest.fixture
def pyiceberg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home and working folder, and PYICEBERG_HOME pointing at a folder of its own."""
    home, work, config = tmp_path / "home", tmp_path / "work", tmp_path / "pyiceberg"
    for folder in (home, work, config):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PYICEBERG_HOME", str(config))
    monkeypatch.chdir(work)
    for name in [n for n in __import__("os").environ if n.startswith("PYICEBERG_CATALOG__")]:
        monkeypatch.delenv(name)
    return config


def write_pyiceberg_yaml(folder: Path, catalogs: dict[str, dict[str, str]]) -> None:
    (folder / ".pyiceberg.yaml").write_text(yaml.safe_dump({"catalog": catalogs}))


def test_a_named_catalog_is_opened_as_pyiceberg_configures_it(pyiceberg_home: Path, tmp_path: Path) -> None:
    prod_db, prod_lake = tmp_path / "prod" / "catalog.db", tmp_path / "prod" / "lake"
    prod_lake.mkdir(parents=True)
    write_pyiceberg_yaml(pyiceberg_home, {"prod": {
        "type": "sql", "uri": f"sqlite:///{prod_db}", "warehouse": f"file://{prod_lake}",
        "s3.endpoint": "http://prod-s3:9000",
    }})
    catalog = open_catalog(CatalogConfig(name="prod"))
    assert catalog.properties["uri"] == f"sqlite:///{prod_db}"  # not a local catalog.db in ./warehouse
    assert catalog.properties["warehouse"] == f"file://{prod_lake}"
    assert catalog.properties["s3.endpoint"] == "http://prod-s3:9000"
    catalog.create_namespace("ns")
    assert prod_db.exists()
    assert not (tmp_path / "work" / "warehouse").exists()


def test_keys_given_in_tabletopic_config_win_over_the_named_ones(pyiceberg_home: Path) -> None:
    write_pyiceberg_yaml(pyiceberg_home, {"prod": {"type": "rest", "uri": "https://catalog", "s3.region": "eu"}})
    config = CatalogConfig(name="prod", warehouse="s3://lake/wh", properties={"s3.region": "us"})
    properties = catalog_properties(config, named_catalog("prod"))
    assert properties == {"type": "rest", "uri": "https://catalog", "s3.region": "us", "warehouse": "s3://lake/wh"}


def test_pyiceberg_environment_variables_name_a_catalog_too(
    pyiceberg_home: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYICEBERG_CATALOG__PROD__URI", "https://catalog")
    monkeypatch.setenv("PYICEBERG_CATALOG__PROD__TYPE", "rest")
    assert catalog_properties(CatalogConfig(name="prod"), named_catalog("prod")) == {
        "uri": "https://catalog", "type": "rest"}


def test_a_name_pyiceberg_does_not_know_is_refused(pyiceberg_home: Path) -> None:
    write_pyiceberg_yaml(pyiceberg_home, {"staging": {"uri": "https://staging"}})
    with pytest.raises(ConfigError) as caught:
        open_catalog(CatalogConfig(name="prod"))
    assert caught.value.key == "catalog.name"
    assert "PYICEBERG_CATALOG__PROD__" in caught.value.reason


def test_no_name_and_no_uri_is_the_embedded_catalog_inheriting_nothing(pyiceberg_home: Path, tmp_path: Path) -> None:
    write_pyiceberg_yaml(pyiceberg_home, {"prod": {"uri": "https://prod", "s3.endpoint": "http://prod-s3"}})
    properties = catalog_properties(CatalogConfig(warehouse=str(tmp_path / "wh")), named_catalog("default"))
    assert properties == {"type": "sql", "uri": f"sqlite:///{tmp_path / 'wh' / 'catalog.db'}",
                          "warehouse": f"file://{tmp_path / 'wh'}"}


def test_a_uri_given_here_needs_no_name(pyiceberg_home: Path) -> None:
    config = CatalogConfig(name="mine", properties={"uri": "https://catalog", "type": "rest"})
    assert catalog_properties(config, named_catalog("mine")) == {
        "uri": "https://catalog", "type": "rest", "warehouse": "warehouse"}
