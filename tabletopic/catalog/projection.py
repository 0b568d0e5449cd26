"""What a rebuild records on a table: the projection its rows are made under, and a cutover's freeze.

A table's *projection* is the part of its config that decides what its rows are: the format, the
partition spec, the mode and key, the drift policy, column names and renames, the caps that make a
record a dead letter. The rest (topics, commit interval, error policy, dead-letter topic) is how it
is operated. `tabletopic rebuild` builds a new version of a table under a new projection and records
it on that table (`tabletopic.projection`); from then on the table's projection wins over the one a
writer's config file gives (a writer with an older file adopts it and says so), so no writer ever adds
rows of another projection to the table (docs/rebuild.md).

The freeze (`tabletopic.frozen`) stops the live writers' commits to a table while a cutover moves it
aside: set in the same commit as an empty snapshot, so a writer that loaded the table before it fails
its append and, on reload, finds it. It lapses by itself (`until`): a cutover killed before its
renames leaves the old table live.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from tabletopic.config import TableConfig, table_config_from
from tabletopic.exceptions import ConfigError, TabletopicError

PROJECTION_KEY = "tabletopic.projection"  # table property: {"hash": ..., "settings": {...}}
PROJECTION_HASH_KEY = "tabletopic.projection-hash"  # snapshot summary: the projection a commit was made under
FROZEN_KEY = "tabletopic.frozen"  # table property: {"by": cutover id, "until": epoch seconds}
FREEZE_SUMMARY_KEY = "tabletopic.freeze"  # snapshot summary of the freeze's empty snapshot: the cutover id
JOURNAL_KEY = "tabletopic.swap"  # on a swap's incoming table: the journal of its renames (tabletopic/rebuild)
# The names a table's versions take during a rebuild: the one being built, the one swapped out, a parking place.
REBUILD_SUFFIX, PREVIOUS_SUFFIX, SWAP_SUFFIX = "__rebuild", "__previous", "__swap"

# How a table is operated, not what its rows are: never part of a projection.
OPERATIONAL = frozenset({
    "table", "topics", "topic", "topic_pattern", "route_field", "route_tables", "properties", "errors",
    "dead_letter_topic", "max_dead_letters_per_minute", "commit_interval_seconds", "target_file_size_bytes",
})


class Cutover(TabletopicError):
    """The table a writer commits to is being handed over by a rebuild: not a failure of the commit."""


class TableFrozen(Cutover):
    """A cutover froze the table: no commit until it is done (or its freeze lapses)."""

    def __init__(self, table: str, by: str, until: float) -> None:
        super().__init__(f"{table} is frozen by cutover {by} until {until:.0f}")
        self.table = table
        self.by = by
        self.until = until


class Handover(Cutover):
    """Another table stands under the name, or the table is made under another projection: the writer makes
    its sink again and reads again from where the table stands."""


class TableReplaced(Handover):
    """The table under the name is not the one the writer has been committing to (a cutover or rollback)."""

    def __init__(self, table: str, was: str, now: str) -> None:
        super().__init__(f"{table} is another table than the one this writer wrote (uuid {now}, was {was})")
        self.table = table


class ProjectionChanged(Handover):
    """The table records another projection than the writer's: the writer adopts the table's."""

    def __init__(self, table: str, recorded: str, mine: str) -> None:
        super().__init__(f"{table} is made under projection {recorded}, this writer's is {mine}")
        self.table = table
        self.recorded = recorded
        self.mine = mine


def settings_of(spec: TableConfig) -> dict[str, Any]:
    """The projection settings of a table's config that differ from their defaults, as plain JSON values:
    a setting added by a later version (at its default) leaves a recorded projection's hash as it was."""
    found = {}
    for f in dataclasses.fields(spec):
        if f.name in OPERATIONAL:
            continue
        value = _plain(getattr(spec, f.name))
        if value != _plain(_default(f)):
            found[f.name] = value
    return found


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def projection_hash(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def hash_of(spec: TableConfig) -> str:
    return projection_hash(settings_of(spec))


@dataclass(frozen=True)
class Projection:
    hash: str
    settings: dict[str, Any]


def encode_projection(spec: TableConfig) -> str:
    settings = settings_of(spec)
    return json.dumps({"hash": projection_hash(settings), "settings": settings}, sort_keys=True)


def recorded_projection(properties: Mapping[str, str]) -> Projection | None:
    text = properties.get(PROJECTION_KEY)
    if not text:
        return None
    data = json.loads(text)
    return Projection(str(data["hash"]), dict(data["settings"]))


def under_projection(spec: TableConfig, projection: Projection) -> TableConfig:
    """`spec` operated as configured, its rows made under `projection` (a rebuild's)."""
    operated = {name: _plain(getattr(spec, name)) for name in OPERATIONAL
                if name in {f.name for f in dataclasses.fields(spec)}}
    try:
        return table_config_from({**operated, **projection.settings}, f"tables[{spec.table}]")
    except ConfigError as exc:
        raise ConfigError(exc.key, f"the projection {spec.table} records (from a rebuild) does not fit this "
                                   f"version of tabletopic: {exc.reason}") from None


def as_recorded(catalog: Catalog, spec: TableConfig) -> tuple[TableConfig, dict[str, dict[str, Any]]]:
    """`spec` with its rows made under the projection its table records (a rebuild's), and where the config
    differs from it; `spec` itself when the table records none or the same."""
    try:
        table = catalog.load_table(spec.table)
    except NoSuchTableError:
        return spec, {}
    recorded = recorded_projection(table.metadata.properties)
    if recorded is None or recorded.hash == hash_of(spec):
        return spec, {}
    return under_projection(spec, recorded), projection_differences(spec, recorded)


def projection_differences(spec: TableConfig, projection: Projection) -> dict[str, dict[str, Any]]:
    """Setting -> {config, table} where the config file says otherwise than the table records."""
    mine, recorded = settings_of(spec), projection.settings
    defaults = {f.name: _plain(_default(f)) for f in dataclasses.fields(spec)}
    return {name: {"config": mine.get(name, defaults.get(name)), "table": recorded.get(name, defaults.get(name))}
            for name in sorted({*mine, *recorded}) if mine.get(name) != recorded.get(name)}


@dataclass(frozen=True)
class Freeze:
    by: str
    until: float


def encode_freeze(by: str, until: float) -> str:
    return json.dumps({"by": by, "until": until})


def active_freeze(properties: Mapping[str, str], now: float) -> Freeze | None:
    """The table's freeze, unless it has lapsed. Pure."""
    text = properties.get(FROZEN_KEY)
    if not text:
        return None
    data = json.loads(text)
    freeze = Freeze(str(data["by"]), float(data["until"]))
    return freeze if now < freeze.until else None


def check_cutover(identifier: str, properties: Mapping[str, str], mine: str | None, now: float) -> None:
    """Before a commit: refuse it while a cutover freezes the table, or when the table is made under
    another projection than `mine` (None: a dead-letter table, which has no projection). Pure."""
    freeze = active_freeze(properties, now)
    if freeze is not None:
        raise TableFrozen(identifier, freeze.by, freeze.until)
    if mine is None:
        return
    recorded = recorded_projection(properties)
    if recorded is not None and recorded.hash != mine:
        raise ProjectionChanged(identifier, recorded.hash, mine)


def swap_under_way(catalog: Catalog, table: str) -> str | None:
    """The id of a swap of `table` begun and not finished (its journal on one of the names it moves between),
    if any: while it lasts, `table` may be briefly absent, and no writer may create it."""
    for suffix in (REBUILD_SUFFIX, PREVIOUS_SUFFIX, SWAP_SUFFIX, ""):
        try:
            found = catalog.load_table(table + suffix)
        except NoSuchTableError:
            continue
        text = found.metadata.properties.get(JOURNAL_KEY)
        if text and not json.loads(text).get("done"):
            return str(json.loads(text)["cutover"])
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
