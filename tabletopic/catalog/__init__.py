"""Catalog loading, table creation and partition specs."""
