"""Load a pyiceberg catalog from tabletopic's config: the embedded SQLite catalog by default.

A catalog pyiceberg knows by name (`.pyiceberg.yaml` in $PYICEBERG_HOME, ~ or the working folder;
`PYICEBERG_CATALOG__<NAME>__*` variables) is opened as pyiceberg opens it: its properties, with
tabletopic's `catalog` keys over them. A name pyiceberg does not know, with nothing else to say
where the catalog is, is refused: never a local catalog in place of the one the user named.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.utils.config import Config as PyicebergConfig
from pyiceberg.utils.config import merge_config

from tabletopic import logs
from tabletopic.config import DEFAULT_WAREHOUSE, CatalogConfig
from tabletopic.exceptions import ConfigError
from tabletopic.secrets import secrets_of

# The name a config gets when it names no catalog.
UNNAMED = "default"


def embedded_properties(warehouse: str) -> dict[str, str]:
    """The default: a SqlCatalog on SQLite, its database file beside a local warehouse folder."""
    if "://" in warehouse and not warehouse.startswith("file://"):
        # An object-store warehouse with no catalog named: keep the catalog database locally.
        db = Path(".tabletopic") / "catalog.db"
        return {"type": "sql", "uri": f"sqlite:///{db.resolve()}", "warehouse": warehouse}
    folder = Path(warehouse.removeprefix("file://")).resolve()
    return {"type": "sql", "uri": f"sqlite:///{folder / 'catalog.db'}", "warehouse": f"file://{folder}"}


def named_catalog(name: str) -> dict[str, Any] | None:
    """pyiceberg's own configuration of the catalog `name`, read now (files and variables), or None."""
    found = PyicebergConfig().get_catalog_config(name)
    return None if found is None else dict(found)


def catalog_properties(config: CatalogConfig, named: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The properties to open the catalog with. `named`: pyiceberg's configuration of `config.name`, if any."""
    properties: dict[str, Any] = dict(config.properties)
    uri = properties.get("uri")
    says_where = uri is not None or properties.get("type", "sql") != "sql" or "py-catalog-impl" in properties
    if named is not None:
        # As pyiceberg's load_catalog: the named catalog's properties, the ones given here over them.
        if config.warehouse != DEFAULT_WAREHOUSE:
            properties["warehouse"] = config.warehouse
        properties = dict(merge_config(dict(named), properties))
    elif not says_where:
        if config.name != UNNAMED:
            raise ConfigError(
                "catalog.name",
                f"pyiceberg knows no catalog named {config.name!r} (looked for .pyiceberg.yaml in $PYICEBERG_HOME, "
                f"the home and the working folder, and for PYICEBERG_CATALOG__{config.name.upper()}__* "
                "variables): add it there, give catalog.uri (and type), or leave catalog.name out for the "
                "embedded SQLite catalog",
            )
        base: dict[str, Any] = embedded_properties(config.warehouse)
        base.update({k: v for k, v in properties.items() if k != "warehouse"})
        properties = base
    else:
        properties.setdefault("warehouse", config.warehouse)
        if "type" not in properties and str(uri).startswith(("sqlite:", "postgresql", "mysql")):
            properties["type"] = "sql"
    if properties.get("type") == "sql":
        db_uri = str(properties.get("uri", ""))
        if db_uri.startswith("sqlite:///"):
            Path(db_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        warehouse = str(properties.get("warehouse", ""))
        if warehouse.startswith("file://"):
            Path(warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return properties


def open_catalog(config: CatalogConfig) -> Catalog:
    named = named_catalog(config.name)
    if named is not None:
        # Secrets kept in pyiceberg's file never passed through tabletopic's config: mask them too.
        logs.mask_also(secrets_of([{k: v for k, v in named.items() if isinstance(v, str)}]))
    try:
        return load_catalog(config.name, **catalog_properties(config, named))
    except Exception as exc:
        # Workers of one pool opening a new SQLite catalog at once: one creates its tables, the other
        # meets them half-made. Opening again finds them made.
        if "already exists" not in str(exc):
            raise
        return load_catalog(config.name, **catalog_properties(config, named))
