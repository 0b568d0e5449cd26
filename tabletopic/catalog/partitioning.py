"""Partition spec expressions from config, e.g. `day(_kafka_timestamp)`, `bucket(16, user_id)`. Pure."""

from __future__ import annotations

from typing import Any

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
    TruncateTransform,
    YearTransform,
)

from tabletopic.core.partition_terms import PartitionTerm


def build_spec(schema: Schema, terms: list[PartitionTerm]) -> PartitionSpec:
    """A spec over `schema`; raises ValueError for a column that is not in it."""
    fields = []
    for index, term in enumerate(terms):
        try:
            source = schema.find_field(term.column)
        except ValueError:
            raise ValueError(f"partition column {term.column!r} is not in the table schema") from None
        transform = _transform(term)
        fields.append(
            PartitionField(source_id=source.field_id, field_id=1000 + index, transform=transform, name=term.field_name)
        )
    return PartitionSpec(*fields)


def _transform(term: PartitionTerm) -> Transform[Any, Any]:
    if term.transform == "bucket":
        return BucketTransform(num_buckets=term.width or 0)
    if term.transform == "truncate":
        return TruncateTransform(width=term.width or 0)
    unary: dict[str, Transform[Any, Any]] = {
        "identity": IdentityTransform(),
        "year": YearTransform(),
        "month": MonthTransform(),
        "day": DayTransform(),
        "hour": HourTransform(),
    }
    return unary[term.transform]
