"""A table's partition spec follows `partition_by` when the config changes it: new data goes to the new spec,
files already written keep theirs (Iceberg reads both). Before, a changed `partition_by` was ignored.

`spec_change` decides (pure); `follow_partition_by` commits the change, once, racing writers included.
A table whose spec tabletopic never set (made by another tool, or before this) and a config without
`partition_by` are left alone: an empty setting says nothing about a spec someone else chose."""

from __future__ import annotations

import json
from dataclasses import dataclass

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table

from tabletopic.catalog.calls import catalog_call
from tabletopic.catalog.partitioning import build_spec
from tabletopic.catalog.tables import scope_problem
from tabletopic.core.partition_terms import parse_term
from tabletopic.exceptions import CommitError, ConfigError

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 5
PARTITION_BY_KEY = "tabletopic.partition-by"  # the `partition_by` the table's spec was last set from (JSON)


def partition_by_property(partition_by: list[str]) -> dict[str, str]:
    return {PARTITION_BY_KEY: json.dumps(partition_by)}


@dataclass(frozen=True)
class SpecChange:
    removed: list[PartitionField]
    added: list[PartitionField]

    @property
    def empty(self) -> bool:
        return not self.removed and not self.added


def _same(a: PartitionField, b: PartitionField) -> bool:
    return a.source_id == b.source_id and str(a.transform) == str(b.transform) and a.name == b.name


def spec_change(current: PartitionSpec, wanted: PartitionSpec) -> SpecChange:
    """The fields to drop from `current` and to add to it so that it partitions as `wanted` does."""
    removed = [f for f in current.fields if not any(_same(f, w) for w in wanted.fields)]
    added = [w for w in wanted.fields if not any(_same(f, w) for f in current.fields)]
    return SpecChange(removed, added)


def wanted_spec(schema: Schema, partition_by: list[str], where: str) -> PartitionSpec:
    try:
        return build_spec(schema, [parse_term(term) for term in partition_by])
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def follow_partition_by(catalog: Catalog, identifier: str, table: Table, partition_by: list[str], where: str) -> Table:
    """`table` with its default spec as `partition_by` says; an upsert table (identifier fields) only to a
    spec its equality deletes can be scoped by, else ConfigError."""
    if not partition_by and PARTITION_BY_KEY not in table.metadata.properties:
        return table
    for attempt in range(1, MAX_ATTEMPTS + 1):
        schema = table.schema()
        wanted = wanted_spec(schema, partition_by, where)
        change = spec_change(table.spec(), wanted)
        if change.empty:
            return table
        if schema.identifier_field_ids and (problem := scope_problem(schema, wanted)) is not None:
            raise ConfigError(where, problem)
        transaction = table.transaction()
        with transaction.update_spec() as update:
            for field in change.removed:
                update.remove_field(field.name)
            for field in change.added:
                update.add_field(schema.find_column_name(field.source_id) or "", field.transform, field.name)
        transaction.set_properties(partition_by_property(partition_by))
        try:
            with catalog_call("partition spec commit", identifier, passes=(CommitFailedException,)):
                transaction.commit_transaction()
        except CommitFailedException as exc:
            log.info("table.partition_conflict", table=identifier, attempt=attempt, error=str(exc))
            table = catalog.load_table(identifier)
            continue
        table = catalog.load_table(identifier)
        log.warning("table.partition_evolved", table=identifier, partition_by=partition_by,
                    removed=[f.name for f in change.removed], added=[f.name for f in change.added],
                    spec_id=table.spec().spec_id, note="files already written keep their spec")
        return table
    raise CommitError(f"{identifier}: partition spec change did not land after {MAX_ATTEMPTS} attempts")
