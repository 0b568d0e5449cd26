"""Which snapshot-summary keys are table state, and that state as of a snapshot.

A state key (an offsets map, the topic ids, the newest record's time, the projection's hash) is read
from the newest ancestor carrying it. Every snapshot tabletopic makes repeats the state of its base
(`carried_state`), so a reader finds it in the current snapshot alone: a catalog that serves no
history (Nessie's REST catalog serves the current snapshot only) or an expired ancestor never hides
a writer's offsets behind a compaction's or another group's snapshot.
"""

from __future__ import annotations

from pyiceberg.table import Table

from tabletopic.catalog.projection import FREEZE_SUMMARY_KEY

STATE_KEY_PREFIX = "tabletopic."
CARRIED_FROM_KEY = "tabletopic.carried-from"  # {key: id of the snapshot its value was copied from}
# Summary keys that describe their own snapshot only; every other tabletopic.* key is state.
PER_SNAPSHOT_KEYS = frozenset({
    "tabletopic.commit-id", "tabletopic.writer-id", "tabletopic.offsets-reset", "tabletopic.compaction-id",
    "tabletopic.manifest-merge-id", "tabletopic.replay-id", FREEZE_SUMMARY_KEY, CARRIED_FROM_KEY,
})


def is_state_key(key: str) -> bool:
    return key.startswith(STATE_KEY_PREFIX) and key not in PER_SNAPSHOT_KEYS


def carried_state(table: Table) -> dict[str, str]:
    """Each state key of the current snapshot's ancestry at its newest value (the walk ends where the
    table's history does). Give it the table as loaded, not a copy trimmed to its current snapshot."""
    by_id = {snapshot.snapshot_id: snapshot for snapshot in table.metadata.snapshots}
    state: dict[str, str] = {}
    snapshot = table.current_snapshot()
    for _ in range(len(by_id)):
        if snapshot is None:
            break
        summary = snapshot.summary.additional_properties if snapshot.summary is not None else {}
        for key, value in summary.items():
            if value is not None and key not in state and is_state_key(key):
                state[key] = value
        parent = snapshot.parent_snapshot_id
        snapshot = by_id.get(parent) if parent is not None else None
    return state


def over_state(table: Table, properties: dict[str, str]) -> dict[str, str]:
    """A new snapshot's summary properties on `table`'s current snapshot: its base's state, `properties` over it."""
    return {**carried_state(table), **properties}
