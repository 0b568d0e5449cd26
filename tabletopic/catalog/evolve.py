"""Apply a schema evolution to a table: a commit of its own, retried until the writers converge."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from tabletopic.catalog.calls import catalog_call
from tabletopic.catalog.evolution import ColumnCaps, EvolutionPlan, check_caps, count_fields, plan_evolution
from tabletopic.core import metadata
from tabletopic.exceptions import CommitError

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 10
LOGGED_CHANGES = 20  # a schema change of thousands of fields is logged by its count and its first changes


def value_schema(table: Table) -> pa.Schema:
    """The table's columns without the Kafka metadata columns."""
    return pa.schema([f for f in table.schema().as_arrow() if f.name not in metadata.NAMES])


def evolve(
    catalog: Catalog, identifier: str, incoming: pa.Schema, additions_only: bool = False,
    caps: ColumnCaps | None = None, guard: Callable[[Table], None] | None = None,
) -> tuple[Table, EvolutionPlan, int]:
    """Change the table to hold `incoming` if the plan allows it; returns the table as it now is, the
    plan and how many fields the change added. With `caps`, a change past them raises TooManyColumns
    and leaves the table as it was.

    Each attempt plans against the freshly loaded table, so a writer that lost the race to
    another one evolving the same way finds nothing left to do. A schema change never moves
    the snapshot, so it never conflicts with a data commit (and the reverse). The change is one
    schema update, committed whole or not at all. `guard(table)` may refuse the change by raising,
    on each freshly loaded table.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        table = _load(catalog, identifier)
        if guard is not None:
            guard(table)
        current = value_schema(table)
        schema = table.schema()
        keys = frozenset(schema.find_column_name(i) or "" for i in schema.identifier_field_ids)
        plan = plan_evolution(current, incoming, additions_only, keys)
        if not plan.needs_change:
            return table, plan, 0
        added = count_fields(plan.target) - count_fields(current)
        if caps is not None:
            check_caps(count_fields(table.schema().as_arrow()), added, caps)
        # The change is planned and checked against the table first (what the records can make fail),
        # then committed: what the commit raises is the catalog's doing (calls.py).
        transaction = table.transaction()
        with transaction.update_schema() as update:
            update.union_by_name(plan.target)
        try:
            with catalog_call("schema commit", identifier, passes=(CommitFailedException,)):
                transaction.commit_transaction()
        except CommitFailedException as exc:
            log.info("schema.conflict", table=identifier, attempt=attempt, error=str(exc))
            continue
        log.info("schema.evolved", table=identifier, changes=plan.changes[:LOGGED_CHANGES],
                 change_count=len(plan.changes), attempt=attempt)
        return _load(catalog, identifier), plan, added
    raise CommitError(f"{identifier}: schema change did not land after {MAX_ATTEMPTS} attempts")


def _load(catalog: Catalog, identifier: str) -> Table:
    with catalog_call("load_table", identifier):
        return catalog.load_table(identifier)
