"""An upsert table's payload for the committer: the batch deduplicated per key (the last offset wins), its
surviving rows as data files, every key it touches as equality deletes, all in one snapshot.

The dedupe runs over everything one commit takes, every partition at once, after the committer has
dropped what the table already holds: a key is then written at most once per snapshot, so no position
delete is ever needed (../shared/DESIGN.md, "Upsert tables")."""

from __future__ import annotations

import pyarrow as pa
import structlog
from pyiceberg.table import Table

from tabletopic.commit.committer import Written, write_data_files
from tabletopic.commit.upsert_files import commit_upsert, specs_with_data, write_equality_deletes
from tabletopic.core.conform import conform_table
from tabletopic.core.upsert_mode import DELETE_FLAG
from tabletopic.upsert.changes import plan_upsert

log = structlog.get_logger(__name__)

FLAG_FIELD = pa.field(DELETE_FLAG, pa.bool_(), nullable=False)


def with_flag(schema: pa.Schema) -> pa.Schema:
    """The schema of an upsert table's buffered rows: the table's, and the delete flag last."""
    return schema.append(FLAG_FIELD)


class UpsertPayload:
    def __init__(self, identifier: str) -> None:
        self.identifier = identifier

    def write(self, table: Table, rows: pa.Table) -> Written:
        schema = table.schema()
        rows = conform_table(rows, with_flag(schema.as_arrow()))
        names = {f.field_id: f.name for f in schema.fields}
        key_ids = list(schema.identifier_field_ids)
        keys = [names[i] for i in key_ids]
        plan = plan_upsert(rows, keys, rows.column(DELETE_FLAG))
        if plan.rejected:  # the intake keeps null keys out: a row here would be lost silently
            raise AssertionError(f"{self.identifier}: {len(plan.rejected)} buffered rows with a null key")
        if plan.keys_in_several_partitions:
            log.warning("upsert.key_in_several_partitions", table=self.identifier,
                        keys=plan.keys_in_several_partitions,
                        why="Kafka orders a key's changes only within a partition: produce keyed records")
        data = plan.rows.drop_columns([DELETE_FLAG])
        deletes = write_equality_deletes(table, plan.delete_keys, key_ids, specs_with_data(table))
        return Written(write_data_files(table, data), deletes, rows=data.num_rows)

    def commit(self, table: Table, written: Written, properties: dict[str, str]) -> int | None:
        return commit_upsert(table, written.files, written.deletes, properties)
