"""Every table a config writes, and which topics feed each one. Pure: the caller lists the topics.

A config entry can stand for several tables: a `topic_pattern` entry names one table per matching
topic (`{topic}` in its name), a `route_field` entry splits its topics among `route_tables` and its
own `table` (the default), and each table with `errors: dlq` has its `<table>__dlq`. The writer
(service.py), the maintenance scheduler, `tabletopic status` and `tabletopic backfill` must agree
on that set; this module is its one description.

As in the writer: a topic named by an entry's `topic`/`topics` never goes to a pattern, and a topic
several patterns match goes to the first one's table.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tabletopic.config import Config, TableConfig
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.routing import split_by, table_for


@dataclass(frozen=True)
class Route:
    """How a routed topic's records are split: the field, its table per value, the default table."""

    field: str
    tables: dict[str, str]
    default: str


@dataclass(frozen=True)
class ResolvedTable:
    identifier: str
    # The settings the writer uses for it (a pattern table's or route target's own copy of the entry).
    spec: TableConfig
    topics: tuple[str, ...]
    route: Route | None = None  # set when the table is one of those a route_field splits records among
    pattern: str | None = None  # the topic_pattern it was named from

    @property
    def dead_letters(self) -> str | None:
        """Its dead-letter table, when bad records are kept."""
        return dlq_identifier(self.identifier) if self.spec.errors == "dlq" else None

    @property
    def routed(self) -> bool:
        return self.route is not None

    def share(self, keys: Sequence[str | None]) -> list[int]:
        """Of a routed topic's records (their route field's values), the indices this table takes."""
        if self.route is None:
            return list(range(len(keys)))
        return split_by(keys, self.route.tables, self.route.default).get(self.identifier, [])


@dataclass(frozen=True)
class Resolution:
    tables: tuple[ResolvedTable, ...]

    def table(self, identifier: str) -> ResolvedTable | None:
        return next((t for t in self.tables if t.identifier == identifier), None)

    def tables_of_topic(self, topic: str) -> list[ResolvedTable]:
        """The tables the writer puts this topic's records in (not their dead-letter tables)."""
        return [t for t in self.tables if topic in t.topics]

    def identifiers(self) -> list[str]:
        """Every table the writer writes: each table, then its dead-letter table."""
        found: list[str] = []
        for table in self.tables:
            found.append(table.identifier)
            if table.dead_letters is not None:
                found.append(table.dead_letters)
        return list(dict.fromkeys(found))


def resolve(config: Config, existing_topics: Iterable[str] = ()) -> Resolution:
    """The tables `config` writes, given the topics that exist (they decide the pattern tables)."""
    tables: dict[str, ResolvedTable] = {}

    def add(identifier: str, spec: TableConfig, topics: Iterable[str], route: Route | None = None,
            pattern: str | None = None) -> None:
        known = tables.get(identifier)
        if known is None:
            tables[identifier] = ResolvedTable(identifier, spec, tuple(dict.fromkeys(topics)), route, pattern)
        else:  # two entries (or a template without {topic}) feeding one table
            merged = tuple(dict.fromkeys([*known.topics, *topics]))
            tables[identifier] = dataclasses.replace(known, topics=merged, route=known.route or route)

    explicit: set[str] = set()
    for spec in config.tables:
        if spec.route_field is not None:
            plain = dataclasses.replace(spec, route_field=None, route_tables={})
            route = Route(spec.route_field, dict(spec.route_tables), spec.table)
            add(spec.table, plain, spec.all_topics, route)
            for target in sorted(set(spec.route_tables.values()) - {spec.table}):
                add(target, dataclasses.replace(plain, table=target), spec.all_topics, route)
            explicit.update(spec.all_topics)
        elif spec.topic_pattern is None:
            add(spec.table, spec, spec.all_topics)
            explicit.update(spec.all_topics)
    patterns = [(re.compile(spec.topic_pattern), spec) for spec in config.tables if spec.topic_pattern]
    for topic in sorted(set(existing_topics) - explicit):
        for pattern, spec in patterns:
            if pattern.fullmatch(topic):
                identifier = table_for(spec.table, topic)
                own = dataclasses.replace(spec, table=identifier, topic=topic, topics=[], topic_pattern=None)
                add(identifier, own, [topic], pattern=pattern.pattern)
                break
    return Resolution(tuple(tables.values()))


def has_patterns(config: Config) -> bool:
    """Whether the tables depend on which topics exist (the caller then has to list them)."""
    return any(spec.topic_pattern for spec in config.tables)
