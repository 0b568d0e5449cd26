import pyarrow as pa

from tabletopic.core.conform import conform_table


def test_rows_of_an_older_schema_gain_new_nested_fields_as_nulls_and_wider_types():
    old = pa.table({"i": pa.array([1, None], pa.int32()), "s": pa.array([{"x": 1}, None]),
                    "l": pa.array([[{"y": "a"}], None])})
    new = pa.schema([("i", pa.int64()), ("s", pa.struct([("x", pa.int64()), ("x2", pa.string())])),
                     ("l", pa.large_list(pa.field("element", pa.struct([("y", pa.large_string()),
                                                                         ("y2", pa.int64())])))),
                     ("added", pa.string())])
    for table in (old, old.slice(1, 1), pa.concat_tables([old.slice(1, 1), old.slice(0, 1)])):
        conformed = conform_table(table, new)
        assert conformed.schema.equals(new)
        expected = {0: {"i": 1, "s": {"x": 1, "x2": None}, "l": [{"y": "a", "y2": None}], "added": None},
                    1: {"i": None, "s": None, "l": None, "added": None}}
        assert conformed.to_pylist() == [expected[0 if row["i"] == 1 else 1] for row in table.to_pylist()]
