import pyarrow as pa

from tabletopic.catalog.evolution import plan_evolution


def schema(**fields):
    return pa.schema([pa.field(name, data_type) for name, data_type in fields.items()])


def test_new_fields_anywhere_are_added_and_widenings_followed():
    current = schema(i=pa.int32(), f=pa.float32(), d=pa.decimal128(10, 2),
                     s=pa.struct([("x", pa.int64())]), l=pa.list_(pa.struct([("y", pa.string())])),
                     m=pa.map_(pa.string(), pa.struct([("z", pa.int64())])))
    incoming = schema(i=pa.int64(), f=pa.float64(), d=pa.decimal128(12, 2),
                      s=pa.struct([("x", pa.int64()), ("x2", pa.string())]),
                      l=pa.list_(pa.struct([("y", pa.large_string()), ("y2", pa.int64())])),
                      m=pa.map_(pa.string(), pa.struct([("z", pa.int64()), ("z2", pa.bool_())])), new=pa.string())
    plan = plan_evolution(current, incoming)
    assert plan.incompatible == []
    assert plan.changes == ["widen i int32 -> int64", "widen f float -> double",
                            "widen d decimal128(10, 2) -> decimal128(12, 2)", "add s.x2 string", "add l[].y2 int64",
                            "add m{}.z2 bool", "add new string"]
    assert plan.target.field("i").type == pa.int64() and plan.target.names[-1] == "new"


def test_narrower_incoming_types_and_missing_fields_change_nothing():
    current = schema(i=pa.int64(), d=pa.decimal128(12, 2), gone=pa.string())
    plan = plan_evolution(current, schema(i=pa.int32(), d=pa.decimal128(10, 2)))
    assert plan.changes == [] and plan.incompatible == [] and not plan.needs_change
    assert plan.target.equals(current)


def test_incompatible_changes_are_refused_with_their_reason():
    current = schema(i=pa.int64(), s=pa.struct([("x", pa.int64())]), d=pa.decimal128(10, 2), name=pa.string())
    plan = plan_evolution(current, schema(i=pa.string(), s=pa.int64(), d=pa.decimal128(12, 3), NAME=pa.string()))
    assert not plan.needs_change
    assert plan.incompatible == [
        "i: int64 cannot change to string", "s: struct cannot change to int64",
        "d: decimal128(10, 2) cannot change to decimal128(12, 3)",
        "NAME: differs from name only by case (Trino cannot read that)",
    ]


def test_additions_only_leaves_type_differences_to_the_records():
    plan = plan_evolution(schema(i=pa.int64()), schema(i=pa.float64(), j=pa.bool_()), additions_only=True)
    assert plan.changes == ["add j bool"] and plan.incompatible == []


def test_a_key_column_never_changes_type_not_even_widened():
    current = pa.schema([pa.field("id", pa.int32(), nullable=False), pa.field("v", pa.int32())])
    incoming = pa.schema([pa.field("id", pa.int64()), pa.field("v", pa.int64())])
    plan = plan_evolution(current, incoming, frozen=frozenset({"id"}))
    assert len(plan.incompatible) == 1
    assert plan.incompatible[0].startswith("id: a key column's type never changes")
    assert not plan.needs_change
    # Without the key, both widen; a narrower value for a key is cast as for any column.
    assert plan_evolution(current, incoming).needs_change
    narrower = pa.schema([pa.field("id", pa.int32())])
    wide = pa.schema([pa.field("id", pa.int64(), nullable=False)])
    assert plan_evolution(wide, narrower, frozen=frozenset({"id"})).incompatible == []
    string = pa.schema([pa.field("id", pa.string())])
    assert plan_evolution(wide, string, frozen=frozenset({"id"})).incompatible[0].startswith("id: a key column")
