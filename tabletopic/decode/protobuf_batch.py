"""The batch path: a message's bodies parsed at once, read into Arrow by ptars (native code), then brought
to the columns of the message's shape (protobuf_types.py).

It must give exactly the per-record path's rows (protobuf_record.py), or give up: the caller then decodes
a record at a time. So the bodies are framed as the items of a repeated field of a one-field wrapper
message, which upb (the per-record parser) parses in one call: if it refuses any body (invalid UTF-8,
nesting past its depth limit, a truncated body), the batch is refused. ptars then reads upb's own
serialization of what it parsed, less the fields upb did not take (unknown numbers, a wrong wire type, a
map entry it could not read), not the bodies: where the wire allows more than one reading (a message
field written twice is merged, two members of a oneof keep the last, a map key written twice its last
value), ptars sees upb's. Values the per-record path refuses after parsing (too many items, a Timestamp
outside years 1-9999, which ptars would clamp) make the batch give up too. Any error does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ptars
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from tabletopic.decode.protobuf_record import MAX_DURATION_US, MAX_TIMESTAMP_US, MIN_TIMESTAMP_US
from tabletopic.decode.protobuf_types import Field, MessageShape, Value
from tabletopic.decode.wire import encode_varint

_CONFIG = ptars.PtarsConfig(timestamp_unit="us", duration_unit="us", enum_repr="string", list_value_name="element")
_WRAPPER_PACKAGE = "tabletopic.batch"


class GaveUp(ValueError):
    """The batch path cannot promise the per-record path's rows for this batch."""


class BatchReader:
    def __init__(self, message: Descriptor, shape: MessageShape) -> None:
        self._shape = shape
        self._wrapper = _wrapper_class(message)
        wrapper = self._wrapper.DESCRIPTOR
        self._handler = ptars.HandlerPool([wrapper.file], config=_CONFIG).get_for_message(wrapper)

    def read(self, bodies: Sequence[bytes], max_items: int) -> pa.Table:
        """The rows of `bodies` in the shape's schema; raises (GaveUp or anything else) to give up."""
        try:
            parsed = self._wrapper.FromString(_framed(bodies))
        except Exception as exc:
            raise GaveUp(f"upb refuses a body: {exc}") from None
        parsed.DiscardUnknownFields()
        try:
            items = self._handler.list_to_record_batch([parsed.SerializeToString()]).column("items")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # ptars panics (pyo3's PanicException is no Exception) on what it cannot build
            raise GaveUp(f"ptars: {type(exc).__name__}: {exc}") from None
        rows = _unsliced(items.values)
        if len(items) != 1 or len(rows) != len(bodies):
            raise GaveUp(f"{len(rows)} messages read from {len(bodies)} bodies")
        columns = [_column(rows.field(f.name), f, max_items) for f in self._shape.fields]
        return pa.Table.from_arrays(columns, schema=self._shape.schema)


def _wrapper_class(message: Descriptor) -> type[Message]:
    """`message Of_<name> { repeated <message> items = 1; }`, added once to the message's own pool."""
    # `_` and `.` escaped apart: `Outer.Inner` and `Outer_Inner` never share a wrapper (and so a shape).
    name = "Of_" + message.full_name.replace("_", "_u").replace(".", "_d")
    pool = message.file.pool
    try:
        wrapper = pool.FindMessageTypeByName(f"{_WRAPPER_PACKAGE}.{name}")
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto(name=f"tabletopic_batch/{name}.proto", package=_WRAPPER_PACKAGE,
                                                  dependency=[message.file.name], syntax="proto3")
        file.message_type.add(name=name).field.add(
            name="items", number=1, label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, type_name=f".{message.full_name}")
        pool.Add(file)
        wrapper = pool.FindMessageTypeByName(f"{_WRAPPER_PACKAGE}.{name}")
    return message_factory.GetMessageClass(wrapper)


def _framed(bodies: Sequence[bytes]) -> bytes:
    """Each body as field 1 (length-delimited) of one message."""
    tags = [_TAGS[len(body)] if len(body) < len(_TAGS) else b"\x0a" + encode_varint(len(body)) for body in bodies]
    parts: list[bytes] = [b""] * (2 * len(bodies))
    parts[::2] = tags
    parts[1::2] = bodies
    return b"".join(parts)


_TAGS = [b"\x0a" + encode_varint(n) for n in range(16_384)]  # field 1's tag and a body's length, up to 2 varint bytes


def _column(array: pa.Array, f: Field, max_items: int) -> pa.Array:
    array = _unsliced(array)
    if f.shape == "list":
        _check_items(array, max_items)
        items = _convert(array.values, f.value, max_items)
        return pa.ListArray.from_arrays(array.offsets, items, type=f.arrow, mask=_mask(array))
    if f.shape == "map":
        _check_items(array, max_items)
        assert f.key is not None
        offsets, keys, values = _in_key_order(array)
        keys = _convert(keys, f.key, max_items)
        values = _convert(values, f.value, max_items)
        return pa.MapArray.from_arrays(offsets, keys, values, type=f.arrow, mask=_mask(array))
    return _convert(array, f.value, max_items)


def _in_key_order(array: pa.MapArray) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Each row's entries sorted by key, a key written twice kept once with its last value (as a parser
    does; protobuf maps have no order, so both paths give key order). Offsets, keys and values."""
    offsets = array.offsets.to_numpy()
    lengths = np.diff(offsets)
    if not len(lengths) or lengths.max() < 2:
        return array.offsets, array.keys, array.items
    rows = np.repeat(np.arange(len(lengths)), lengths)
    entries = pa.table({"row": rows, "key": array.keys, "at": np.arange(len(rows))})
    order = pc.sort_indices(entries, sort_keys=[("row", "ascending"), ("key", "ascending"), ("at", "ascending")])
    order_np = order.to_numpy()
    sorted_rows, sorted_keys = rows[order_np], array.keys.take(order)
    last = np.ones(len(order_np), dtype=bool)  # the last entry of each (row, key)
    if len(order_np) > 1:
        same_key = pc.equal(sorted_keys[:-1], sorted_keys[1:]).to_numpy(zero_copy_only=False)
        last[:-1] = ~((sorted_rows[:-1] == sorted_rows[1:]) & same_key)
    kept = pa.array(order_np[last])
    counts = np.bincount(sorted_rows[last], minlength=len(lengths))
    new_offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return new_offsets, array.keys.take(kept), array.items.take(kept)


def _convert(array: pa.Array, value: Value, max_items: int) -> pa.Array:
    array = _unsliced(array)
    kind = value.kind
    if kind == "message":
        children = [_column(array.field(f.name), f, max_items) for f in value.fields]
        return pa.StructArray.from_arrays(children, fields=list(value.arrow), mask=_mask(array))
    if kind == "any":
        children = [array.field("type_url"), array.field("value")]
        return pa.StructArray.from_arrays(children, fields=list(value.arrow), mask=_mask(array))
    if kind == "timestamp":
        _check_range(array.cast(pa.int64()), MIN_TIMESTAMP_US, MAX_TIMESTAMP_US, "Timestamp")
        return array.cast(value.arrow)
    if kind == "duration":
        micros = array.cast(pa.int64())
        _check_range(micros, -MAX_DURATION_US, MAX_DURATION_US, "Duration")
        return micros
    if kind in ("scalar", "enum", "wrapper"):
        return array if array.type.equals(value.arrow) else array.cast(value.arrow)
    raise GaveUp(f"no batch reading for {kind} values")


def _unsliced(array: pa.Array) -> pa.Array:
    return pa.concat_arrays([array]) if array.offset else array


def _mask(array: pa.Array) -> pa.Array | None:
    return array.is_null() if array.null_count else None


def _check_items(array: pa.Array, max_items: int) -> None:
    offsets = array.offsets
    longest = pc.max(pc.subtract(offsets[1:], offsets[:-1])).as_py() if len(array) else None
    if longest is not None and longest > max_items:
        raise GaveUp("more items than max_items")


def _check_range(micros: pa.Array, low: int, high: int, what: str) -> None:
    bounds = pc.min_max(micros)
    lowest, highest = bounds["min"].as_py(), bounds["max"].as_py()
    if lowest is not None and (lowest < low or highest > high):
        raise GaveUp(f"a {what} out of range")
