"""Load a pyiceberg catalog from tabletopic's config: the embedded SQLite catalog by default."""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog import Catalog, load_catalog

from tabletopic.config import CatalogConfig


def embedded_properties(warehouse: str) -> dict[str, str]:
    """The default: a SqlCatalog on SQLite, its database file beside a local warehouse folder."""
    if "://" in warehouse and not warehouse.startswith("file://"):
        # An object-store warehouse with no catalog named: keep the catalog database locally.
        db = Path(".tabletopic") / "catalog.db"
        return {"type": "sql", "uri": f"sqlite:///{db.resolve()}", "warehouse": warehouse}
    folder = Path(warehouse.removeprefix("file://")).resolve()
    return {"type": "sql", "uri": f"sqlite:///{folder / 'catalog.db'}", "warehouse": f"file://{folder}"}


def catalog_properties(config: CatalogConfig) -> dict[str, str]:
    properties = dict(config.properties)
    uri = properties.get("uri")
    if uri is None:
        base = embedded_properties(config.warehouse)
        base.update({k: v for k, v in properties.items() if k != "warehouse"})
        properties = base
    else:
        properties.setdefault("warehouse", config.warehouse)
        if "type" not in properties and uri.startswith(("sqlite:", "postgresql", "mysql")):
            properties["type"] = "sql"
    if properties.get("type") == "sql":
        db_uri = properties["uri"]
        if db_uri.startswith("sqlite:///"):
            Path(db_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        warehouse = properties.get("warehouse", "")
        if warehouse.startswith("file://"):
            Path(warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return properties


def open_catalog(config: CatalogConfig) -> Catalog:
    try:
        return load_catalog(config.name, **catalog_properties(config))
    except Exception as exc:
        # Workers of one pool opening a new SQLite catalog at once: one creates its tables, the other
        # meets them half-made. Opening again finds them made.
        if "already exists" not in str(exc):
            raise
        return load_catalog(config.name, **catalog_properties(config))
