"""A `replace` snapshot: the same rows, in other files. pyiceberg 0.12 has no producer for it.

It is pyiceberg's overwrite producer (rewrite the manifests that hold the removed files, add a
manifest for the new ones) with the operation Iceberg defines for compaction, `replace`,
which engines and maintenance tools read as "no logical change". Its validation is ours
(compaction.rewrite): the files it removes must all still be live; appends beside it are fine.
pyiceberg is pinned, so its private producer is a stable base here.
"""

from __future__ import annotations

from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation, Summary
from pyiceberg.table.update.snapshot import _OverwriteFiles
from pyiceberg.typedef import EMPTY_DICT

from tabletopic.commit.committer import without_pyiceberg_retries


class _ReplaceFiles(_OverwriteFiles):
    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        # pyiceberg totals summaries for append/overwrite/delete only; a replace totals like an overwrite.
        self._operation = Operation.OVERWRITE
        try:
            summary = super()._summary(snapshot_properties)
        finally:
            self._operation = Operation.REPLACE
        return Summary(Operation.REPLACE, **summary.additional_properties)


def commit_replace(table: Table, removed: list[DataFile], added: list[DataFile], properties: dict[str, str]) -> None:
    """One `replace` snapshot on `main`; raises CommitFailedException if the table moved since `table` was loaded."""
    table = without_pyiceberg_retries(table)  # our loop validates and retries (compaction.rewrite)
    transaction = table.transaction()
    producer = _ReplaceFiles(operation=Operation.REPLACE, transaction=transaction, io=table.io,
                             snapshot_properties=properties)
    for data_file in removed:
        producer.delete_data_file(data_file)
    for data_file in added:
        producer.append_data_file(data_file)
    producer.commit()
    transaction.commit_transaction()
