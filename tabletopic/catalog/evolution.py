"""How a table's value schema follows an incoming schema. Pure: decides, never touches a table.

Allowed, applied as a schema change before the rows that need it are appended:
- a new field anywhere (top level, in a struct, in a list's struct, in a map value) → a new
  optional column;
- int → long, float → double, decimal(p, s) → decimal(p', s) with p' > p.
Kept as is (the incoming values are cast): long ← int, double ← float, a narrower decimal of
the same scale, a field the incoming schema no longer has (nulls from then on).
Refused (the records go to the dead letters, the table does not change): any other type change
(long → string, struct → primitive, narrowing, a decimal scale change) and a new name that
differs from an existing one only by case.

Capped: a change that would take the table past `max_columns` fields, or add more fields in one
batch than the batch has room for (`max_new_columns_per_batch`), is refused with TooManyColumns.
The room holds back only a batch's later changes: the table's creation, and the first change one
record asks for, are bounded by `max_columns` alone, so that a record wider than the room lands.
Fields count at every depth (a struct's members too): each is a column id to Iceberg.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from tabletopic.catalog.schema_check import check_schema
from tabletopic.exceptions import SchemaError

_WIDENINGS = {(pa.int32(), pa.int64()), (pa.float32(), pa.float64())}


@dataclass
class EvolutionPlan:
    target: pa.Schema  # the value schema the table should have
    changes: list[str] = field(default_factory=list)  # what the schema change does, for logs
    incompatible: list[str] = field(default_factory=list)  # why the incoming schema is refused

    @property
    def needs_change(self) -> bool:
        return bool(self.changes) and not self.incompatible


class TooManyColumns(Exception):
    """A schema change past a table's caps on columns; the message has the counts."""


@dataclass(frozen=True)
class ColumnCaps:
    max_columns: int  # fields in the whole table, at every depth
    room: int | None  # fields this batch may still add; None: any number (a batch's first change)


def check_caps(columns: int, added: int, caps: ColumnCaps) -> None:
    """TooManyColumns if adding `added` fields to a table of `columns` is past `caps`. A change that
    adds nothing passes, even to a table already wider than max_columns (made before the cap, or by
    another tool): its records must keep landing."""
    if added <= 0:
        return
    if caps.room is not None and added > caps.room:
        raise TooManyColumns(f"{added} new fields, more than this batch may still add ({max(caps.room, 0)} of "
                             "max_new_columns_per_batch)")
    if columns + added > caps.max_columns:
        raise TooManyColumns(f"{added} new fields would give the table {columns + added} columns, over "
                             f"max_columns ({caps.max_columns}; it has {columns})")


def count_fields(schema: pa.Schema | pa.DataType) -> int:
    """Fields at every depth: top-level ones and the members of structs, also inside lists and maps."""
    if isinstance(schema, pa.Schema):
        return sum(1 + count_fields(f.type) for f in schema)
    if pa.types.is_struct(schema):
        return sum(1 + count_fields(schema.field(i).type) for i in range(schema.num_fields))
    if _is_list(schema):
        return count_fields(schema.value_type)
    if pa.types.is_map(schema):
        return count_fields(schema.item_type)
    return 0


def plan_evolution(current: pa.Schema, incoming: pa.Schema, additions_only: bool = False,
                   frozen: frozenset[str] = frozenset()) -> EvolutionPlan:
    """The table schema that holds both; with `additions_only`, differing types are left to per-record checks.
    `frozen`: top-level columns whose type never changes, not even widened (an upsert table's key columns:
    the keys already written in equality deletes would no longer match)."""
    plan = EvolutionPlan(pa.schema([]))
    for name in frozen & set(current.names) & set(incoming.names):
        old, new = current.field(name).type, incoming.field(name).type
        if not _same(old, new) and (new, old) not in _WIDENINGS:  # a narrower value is cast, as for any column
            plan.incompatible.append(f"{name}: a key column's type never changes ({_name(old)} -> {_name(new)})")
    merged = _merge_fields(list(current), list(incoming), "", plan, additions_only)
    plan.target = pa.schema(merged)
    return plan


def _merge_fields(
    current: list[pa.Field], incoming: list[pa.Field], prefix: str, plan: EvolutionPlan, additions_only: bool
) -> list[pa.Field]:
    by_name = {f.name: f for f in incoming}
    names = {f.name for f in current}
    lower = {f.name.lower(): f.name for f in current}
    merged = []
    for old in current:
        new = by_name.get(old.name)
        if new is None:
            merged.append(old)
        else:
            merged.append(old.with_type(_merge_type(old.type, new.type, f"{prefix}{old.name}", plan, additions_only)))
    for new in incoming:
        if new.name in names:
            continue
        path = f"{prefix}{new.name}"
        clash = lower.get(new.name.lower())
        if clash is not None:
            plan.incompatible.append(f"{path}: differs from {prefix}{clash} only by case (Trino cannot read that)")
            continue
        try:
            check_schema(pa.schema([new]))
        except SchemaError as exc:
            plan.incompatible.append(f"{prefix}{exc.field}: {exc.reason}")
            continue
        lower[new.name.lower()] = new.name
        merged.append(pa.field(new.name, new.type, nullable=True))
        plan.changes.append(f"add {path} {new.type}")
    return merged


def _merge_type(
    old: pa.DataType, new: pa.DataType, path: str, plan: EvolutionPlan, additions_only: bool
) -> pa.DataType:
    if _same(old, new):
        return old
    if pa.types.is_struct(old) and pa.types.is_struct(new):
        children = _merge_fields(_children(old), _children(new), f"{path}.", plan, additions_only)
        return pa.struct(children)
    if _is_list(old) and _is_list(new):
        item = _merge_type(old.value_type, new.value_type, f"{path}[]", plan, additions_only)
        return pa.list_(old.value_field.with_type(item))
    if pa.types.is_map(old) and pa.types.is_map(new) and _same(old.key_type, new.key_type):
        item = _merge_type(old.item_type, new.item_type, f"{path}{{}}", plan, additions_only)
        return pa.map_(old.key_field, old.item_field.with_type(item))
    if additions_only:
        return old
    if (old, new) in _WIDENINGS:
        plan.changes.append(f"widen {path} {old} -> {new}")
        return new
    if (new, old) in _WIDENINGS:
        return old
    if pa.types.is_decimal(old) and pa.types.is_decimal(new) and old.scale == new.scale:
        # pyiceberg 0.12's promotion check compares the scale with itself: the scale test is ours.
        if new.precision > old.precision:
            plan.changes.append(f"widen {path} {old} -> {new}")
            return new
        return old
    plan.incompatible.append(f"{path}: {_name(old)} cannot change to {_name(new)}")
    return old


def _children(struct: pa.DataType) -> list[pa.Field]:
    return [struct.field(i) for i in range(struct.num_fields)]


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)


_SMALL = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}


def _same(old: pa.DataType, new: pa.DataType) -> bool:
    """Equal as column types: string and large_string alike, list item names and field metadata ignored."""
    if pa.types.is_struct(old) and pa.types.is_struct(new):
        return old.num_fields == new.num_fields and all(
            a.name == b.name and _same(a.type, b.type) for a, b in zip(_children(old), _children(new), strict=True)
        )
    if _is_list(old) and _is_list(new):
        return _same(old.value_type, new.value_type)
    if pa.types.is_map(old) and pa.types.is_map(new):
        return _same(old.key_type, new.key_type) and _same(old.item_type, new.item_type)
    return bool(_SMALL.get(old, old) == _SMALL.get(new, new))


def _name(data_type: pa.DataType) -> str:
    if pa.types.is_struct(data_type):
        return "struct"
    if _is_list(data_type):
        return "list"
    if pa.types.is_map(data_type):
        return "map"
    return str(_SMALL.get(data_type, data_type))
