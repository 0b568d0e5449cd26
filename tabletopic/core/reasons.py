"""Why a record is a dead letter: the `reason` column of `<table>__dlq`, stable across versions."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    MALFORMED_JSON = "malformed_json"  # not JSON, or JSON but not an object
    NOT_WIRE_FORMAT = "not_wire_format"  # Avro topic, value without the magic byte and schema id
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"  # the registry has no schema under the record's id
    UNDECODABLE_AVRO = "undecodable_avro"  # the body does not decode with its writer schema
    UNKNOWN_MESSAGE_INDEX = "unknown_message_index"  # Protobuf: the message-index array names no message of its schema
    UNDECODABLE_PROTOBUF = "undecodable_protobuf"  # Protobuf: the body does not parse as its message
    TYPE_MISMATCH = "type_mismatch"  # a value does not fit its column's type
    INCOMPATIBLE_SCHEMA = "incompatible_schema"  # the record's schema would need a change the table refuses
    UNKNOWN_FIELD = "unknown_field"  # JSON drift policy `strict`: a field the table does not have
    OVERSIZED = "oversized"  # the value is larger than the table's `max_record_bytes`
    NULL_REQUIRED = "null_required"  # a null (or missing) value for a required column
    TOO_DEEP = "too_deep"  # JSON nested deeper than the decoder accepts
    BAD_FIELD_NAME = "bad_field_name"  # a field name no column may have (empty, dotted, control characters, ...)
    TOO_MANY_ITEMS = "too_many_items"  # an array or map with more items than the table's `max_items`
    TOO_MANY_COLUMNS = "too_many_columns"  # new fields past `max_columns` or the per-batch cap of new fields
    DECODER_ERROR = "decoder_error"  # the decoder or the schema evolution failed on the record (names the exception)
    MISSING_KEY = "missing_key"  # upsert table: no key, or a null key column (a delete with nothing to delete by)
    KEY_MISMATCH = "key_mismatch"  # upsert table: a value's key column differs from the record's Kafka key
    BAD_ENVELOPE = "bad_envelope"  # Debezium: not an envelope, an unknown `op`, or c/r/u without `after`
    TRUNCATE_UNSUPPORTED = "truncate_unsupported"  # Debezium truncate (`t`): not applied, truncate the table by hand
    RENAME_COLLISION = "rename_collision"  # rename_columns: the value holds a renamed field and its target name
    SCHEMA_VIOLATION = "schema_violation"  # JSON Schema: the value does not validate against its registered schema
