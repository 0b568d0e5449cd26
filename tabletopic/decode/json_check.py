"""The type check of decoded JSON values against Arrow column types, shared by the writer's
per-record JSON path and the audit's reference decode.

`pa.Table.from_pylist` converts loosely (a float 1.5 lands in a long column as 1): a value must
fit its column as it is, or its record is a dead letter, never a silently altered row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa


class Misfit(ValueError):
    """A JSON value that does not fit its column's type."""


class NeedsParser(Exception):
    """A column type with no plain JSON form: pyarrow.json decides."""


def check_json(value: Any, data_type: pa.DataType, path: str) -> None:
    """Raise Misfit naming `path` if the decoded JSON `value` does not fit `data_type` as it is."""
    json_checker(data_type, path)(value)


Checker = Callable[[Any], None]


def json_checker(data_type: pa.DataType, path: str) -> Checker:
    """A check of decoded JSON values against `data_type`, built once per schema (it runs on every value)."""
    if pa.types.is_struct(data_type):
        fields = [data_type.field(i) for i in range(data_type.num_fields)]
        children = [(f.name, json_checker(f.type, f"{path}.{f.name}")) for f in fields]

        def check_struct(value: Any) -> None:
            if value is None:
                return
            if type(value) is not dict:
                raise _misfit(path, value, "struct")
            for name, check in children:
                check(value.get(name))
        return check_struct
    if pa.types.is_map(data_type):
        map_item = json_checker(data_type.item_type, f"{path}{{}}")

        def check_map(value: Any) -> None:
            if value is None:
                return
            if type(value) is not dict:
                raise _misfit(path, value, "map")
            for each in value.values():
                map_item(each)
        return check_map
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        list_item = json_checker(data_type.value_type, f"{path}[]")

        def check_list(value: Any) -> None:
            if value is None:
                return
            if type(value) is not list:
                raise _misfit(path, value, "list")
            for each in value:
                list_item(each)
        return check_list
    bounds = _INTEGER_RANGES.get(str(data_type))
    if bounds is not None:
        low, high = bounds

        def check_integer(value: Any) -> None:
            if value is None:
                return
            if type(value) is not int:
                raise _misfit(path, value, str(data_type))
            if not low <= value <= high:  # from_pylist would raise OverflowError
                raise Misfit(f"{path}: integer {value} is outside the range of a {data_type} column")
        return check_integer
    accepted = _ACCEPTED.get(str(data_type))
    if accepted is None:
        def needs_parser(value: Any) -> None:
            if value is not None:
                raise NeedsParser
        return needs_parser

    def check_primitive(value: Any) -> None:
        if value is not None and type(value) not in accepted:
            raise _misfit(path, value, str(data_type))
    return check_primitive


# The Python types json.loads gives that a column takes as they are (bool is not an int here).
_ACCEPTED: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    **dict.fromkeys(("halffloat", "float", "double"), (int, float)),
    "string": (str,),
    "large_string": (str,),
}


_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    **{f"int{bits}": (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) for bits in (8, 16, 32, 64)},
    **{f"uint{bits}": (0, (1 << bits) - 1) for bits in (8, 16, 32, 64)},
}


def parser_type(data_type: pa.DataType) -> pa.DataType:
    """`data_type` as pyarrow.json parses into it: its strings and binaries as they are (large ones too:
    no cast of their data after), a large list as a list (what pyarrow.json cannot make: widening its
    offsets after leaves the items as parsed)."""
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return pa.list_(parser_type(data_type.value_type))
    if pa.types.is_struct(data_type):
        return pa.struct([pa.field(f.name, parser_type(f.type)) for f in (data_type.field(i)
                                                                           for i in range(data_type.num_fields))])
    if pa.types.is_map(data_type):
        return pa.map_(parser_type(data_type.key_type), parser_type(data_type.item_type))
    return data_type


def _misfit(path: str, value: Any, kind: str) -> Misfit:
    return Misfit(f"{path}: {type(value).__name__} {value!r:.40} for a {kind} column")
