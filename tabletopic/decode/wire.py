"""The Confluent wire format's header: magic byte 0, a 4-byte big-endian schema id, and for Protobuf the
message-index array that names the message of the schema's file the body is. Pure.

The array is a zig-zag varint count, then as many zig-zag varint indexes: index i₀ of the file's top-level
messages, i₁ of that message's nested messages, and so on. `[0]` (the first message) is written as the count 0
alone, the single byte 0x00.
"""

from __future__ import annotations

import struct

MAGIC = 0
HEADER = struct.Struct(">bI")
MAX_MESSAGE_INDEXES = 32  # deeper than any schema anyone writes; bounds what a stray byte can make us walk
_MAX_VARINT_BYTES = 10


class NotWireFormat(ValueError):
    """Too short, a magic byte other than 0, or a message-index array that does not parse."""


class BadMessageIndexes(ValueError):
    """A message-index array that parses but cannot name a message (negative, or too many levels)."""


def looks_framed(value: bytes | None) -> bool:
    """Whether `value` starts like the Confluent wire format. JSON text never starts with the byte 0."""
    return value is not None and len(value) >= HEADER.size and value[0] == MAGIC


def schema_id_of(value: bytes) -> int:
    """The schema id of a wire-format value; NotWireFormat (a ValueError) if it is not one."""
    if len(value) < HEADER.size:
        raise NotWireFormat(f"too short for the Confluent wire format ({len(value)} bytes)")
    magic, schema_id = HEADER.unpack_from(value)
    if magic != MAGIC:
        raise NotWireFormat(f"not the Confluent wire format (magic byte {magic}, expected 0)")
    return int(schema_id)


def message_indexes(value: bytes) -> tuple[tuple[int, ...], int]:
    """The message-index path of a Protobuf wire-format value and where its body starts.
    NotWireFormat or BadMessageIndexes if the header is not one."""
    schema_id_of(value)
    if len(value) > HEADER.size and value[HEADER.size] == 0:
        return (0,), HEADER.size + 1  # the common case: the file's first message
    count, at = _zigzag_varint(value, HEADER.size)
    if count < 0 or count > MAX_MESSAGE_INDEXES:
        raise BadMessageIndexes(f"message-index array of {count} entries (0-{MAX_MESSAGE_INDEXES})")
    indexes = []
    for _ in range(count):
        index, at = _zigzag_varint(value, at)
        if index < 0:
            raise BadMessageIndexes(f"negative message index {index}")
        indexes.append(index)
    return tuple(indexes), at


def _zigzag_varint(value: bytes, at: int) -> tuple[int, int]:
    raw, shift = 0, 0
    for position in range(at, min(at + _MAX_VARINT_BYTES, len(value))):
        byte = value[position]
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), position + 1
        shift += 7
    raise NotWireFormat("the message-index array is cut short or holds a varint wider than 64 bits")


def encode_message_indexes(indexes: tuple[int, ...] | list[int]) -> bytes:
    """The array for `indexes`, as producers write it (`[0]` as the single byte 0)."""
    if list(indexes) == [0]:
        return b"\x00"
    return b"".join(_encode_zigzag(n) for n in [len(indexes), *indexes])


def _encode_zigzag(number: int) -> bytes:
    return encode_varint((number << 1) ^ (number >> 63))


def encode_varint(number: int) -> bytes:
    """A non-negative integer as a Protobuf base-128 varint."""
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)
