"""Checks a new table's schema before it is created, so no engine meets a column it cannot read. Pure."""

from __future__ import annotations

import pyarrow as pa

from tabletopic.exceptions import SchemaError


def check_schema(schema: pa.Schema) -> None:
    """Raise SchemaError for names that differ only by case (Trino cannot read them) or unmappable types."""
    _check_fields(list(schema), "")


def _check_fields(fields: list[pa.Field], prefix: str) -> None:
    seen: dict[str, str] = {}
    for field in fields:
        path = f"{prefix}{field.name}"
        other = seen.get(field.name.lower())
        if other is not None:
            raise SchemaError(path, f"differs from {prefix}{other!s} only by case; engines such as Trino cannot "
                                    "read such a table")
        seen[field.name.lower()] = field.name
        _check_type(field.type, path)


def _check_type(data_type: pa.DataType, path: str) -> None:
    if pa.types.is_struct(data_type):
        if data_type.num_fields == 0:
            raise SchemaError(path, "an empty struct has no Iceberg type")
        _check_fields([data_type.field(i) for i in range(data_type.num_fields)], f"{path}.")
    elif pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        _check_type(data_type.value_type, f"{path}[]")
    elif pa.types.is_map(data_type):
        _check_type(data_type.item_type, f"{path}{{}}")
    elif pa.types.is_null(data_type) or pa.types.is_union(data_type) or pa.types.is_dictionary(data_type):
        raise SchemaError(path, f"Arrow type {data_type} has no Iceberg type")
