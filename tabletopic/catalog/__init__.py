"""Catalog loading, table creation and partition specs."""

# pyiceberg's projection keeps null lists and maps null only once the seam has patched it: before any module
# of this package writes or reads a table (catalog/pyiceberg_private.py, "nulls of nested lists and maps").
from tabletopic.catalog import pyiceberg_private as _pyiceberg_private  # noqa: F401
