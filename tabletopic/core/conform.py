"""Bring rows decoded under an older table schema to the current one: new fields as nulls, wider types. Pure."""

from __future__ import annotations

import pyarrow as pa


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns; a column `table` lacks is all nulls."""
    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table[field.name]
            chunks = [conform_array(chunk, field.type) for chunk in column.chunks]
            columns.append(pa.chunked_array(chunks, type=field.type))
        else:
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, field.type)], type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def conform_array(array: pa.Array, target: pa.DataType) -> pa.Array:
    if array.type.equals(target):
        return array
    if array.offset:  # a slice: rebuilding from offsets and a null mask needs it to start at 0
        array = pa.concat_arrays([array])
    if pa.types.is_struct(target) and pa.types.is_struct(array.type):
        names = {array.type.field(i).name for i in range(array.type.num_fields)}
        children = [
            conform_array(array.field(f.name), f.type) if f.name in names else pa.nulls(len(array), f.type)
            for f in (target.field(i) for i in range(target.num_fields))
        ]
        fields = [target.field(i) for i in range(target.num_fields)]
        return pa.StructArray.from_arrays(children, fields=fields, mask=array.is_null())
    if _is_list(target) and _is_list(array.type):
        values = conform_array(array.values, target.value_type)
        builder = pa.LargeListArray if pa.types.is_large_list(target) else pa.ListArray
        offsets = array.offsets.cast(pa.int64() if pa.types.is_large_list(target) else pa.int32())
        return builder.from_arrays(offsets, values, type=target, mask=array.is_null())
    if pa.types.is_map(target) and pa.types.is_map(array.type):
        items = conform_array(array.items, target.item_type)
        return pa.MapArray.from_arrays(array.offsets, array.keys.cast(target.key_type), items, type=target,
                                       mask=array.is_null())
    return array.cast(target)


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)
