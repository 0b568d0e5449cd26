import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.schema import assign_fresh_schema_ids
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform

from tabletopic.catalog.partitioning import build_spec
from tabletopic.core.partition_terms import PartitionTerm, parse_term


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("day(_kafka_timestamp)", PartitionTerm("day", "_kafka_timestamp")),
        ("bucket(16, user_id)", PartitionTerm("bucket", "user_id", 16)),
        ("truncate( 4 ,name )", PartitionTerm("truncate", "name", 4)),
        ("region", PartitionTerm("identity", "region")),
        ("identity(region)", PartitionTerm("identity", "region")),
    ],
)
def test_parse(text, term):
    assert parse_term(text) == term


@pytest.mark.parametrize("text", ["dya(ts)", "bucket(user_id)", "day(3, ts)", "a b", ""])
def test_parse_refuses_with_a_reason(text):
    with pytest.raises(ValueError):
        parse_term(text)


def test_build_spec_points_at_the_right_source_columns():
    schema = assign_fresh_schema_ids(Catalog._convert_schema_if_needed(pa.schema([
        pa.field("user_id", pa.string()), pa.field("ts", pa.timestamp("us", tz="UTC")), pa.field("region", pa.string()),
    ])))
    spec = build_spec(schema, [parse_term("day(ts)"), parse_term("bucket(8, user_id)"), parse_term("region")])
    sources = [(schema.find_column_name(f.source_id), type(f.transform)) for f in spec.fields]
    assert sources == [("ts", DayTransform), ("user_id", BucketTransform), ("region", IdentityTransform)]
    with pytest.raises(ValueError, match="not in the table schema"):
        build_spec(schema, [parse_term("day(nope)")])
