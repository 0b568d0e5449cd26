"""Every table a config writes, and which topics feed each one. Pure: the caller lists the topics.

A config entry can stand for several tables: a `topic_pattern` entry names one table per matching
topic (`{topic}` in its name), a `route_field` entry splits its topics among `route_tables` and its
own `table` (the default), and each table with `errors: dlq` has its `<table>__dlq`. The writer
(service.py), the maintenance scheduler, `tabletopic status` and `tabletopic backfill` must agree
on that set; this module is its one description.

As in the writer: a topic named by an entry's `topic`/`topics` never goes to a pattern, and a topic
several patterns match goes to the first one's table.

A pattern whose table has `{topic}` gives each topic a table of its own, named from the topic's
safe name, which folds names (`shop.Orders` and `shop.ORDERS!!` are both `shop_orders`). So a topic
is refused (its records are not read) when its table:
- ends in a reserved suffix (`__dlq`): it would write into another table's dead letters;
- is fed by a configured entry, or by a pattern without `{topic}`;
- is claimed by other topics too: one keeps it, the others are refused. The one that keeps it is
  a topic the table's committed offsets already name (it has fed the table: stored in the table,
  so every writer and every restart agrees; no other topic takes the table over, even while that
  one is deleted), else the first name in code-point order among the matching topics that exist
  (a rule on the set of names, not on the order writers see them).

That last rule needs every topic that exists. When they cannot be listed, `claim` decides only what
no other topic could change (a reserved suffix, a configured table, a topic the committed offsets
already rule out or in); the rest stay undecided: the writer reads none of their records until it can
list the topics again.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
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
class Refusal:
    """A topic a pattern matches whose records are not read, and why."""

    topic: str
    table: str
    reason: str
    owner: str | None = None  # the topic (or entry) that feeds the table instead


@dataclass(frozen=True)
class Resolution:
    tables: tuple[ResolvedTable, ...]
    refused: tuple[Refusal, ...] = ()

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


def resolve(config: Config, existing_topics: Iterable[str] = (),
            fed_by: Callable[[str], Collection[str]] | None = None) -> Resolution:
    """The tables `config` writes, given the topics that exist (they decide the pattern tables).
    `fed_by`: the topics a table's committed offsets name (none for a table that does not exist)."""
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
    matched: list[tuple[str, str, TableConfig, str]] = []  # topic, its table, entry, pattern
    for topic in sorted(set(existing_topics) - explicit):
        for pattern, spec in patterns:
            if pattern.fullmatch(topic):
                matched.append((topic, table_for(spec.table, topic), spec, pattern.pattern))
                break
    configured = {identifier: table.topics for identifier, table in tables.items()}
    refused = _refusals(matched, configured, fed_by or (lambda _table: ()))
    for topic, identifier, spec, pattern_text in matched:
        if topic not in refused:
            own = dataclasses.replace(spec, table=identifier, topic=topic, topics=[], topic_pattern=None)
            add(identifier, own, [topic], pattern=pattern_text)
    return Resolution(tuple(tables.values()), tuple(refused.values()))


@dataclass(frozen=True)
class Claims:
    """Of topics newly assigned to a writer: those that join their pattern table, those refused, and
    those undecided until the topics can be listed."""

    joined: tuple[str, ...]
    refused: tuple[Refusal, ...]
    undecided: tuple[str, ...] = ()


def claim(config: Config, topics: Sequence[str], existing: Collection[str] | None,
          fed_by: Callable[[str], Collection[str]]) -> Claims:
    """Which of `topics` (each matches a `topic_pattern`) join their tables. `existing`: every topic the
    cluster has, None when it could not be listed. Without it a decision is taken only when no topic
    listed later could change it: more topics can only refuse more (a table gets more claimants, or a
    lower name), so a refusal among the known topics stands, while a topic keeps its table for sure only
    when the committed offsets name it first and no pattern without `{topic}` can feed that table."""
    seen: dict[str, Collection[str]] = {}

    def recorded(table: str) -> Collection[str]:  # one catalog read per table
        if table not in seen:
            seen[table] = fed_by(table)
        return seen[table]

    resolution = resolve(config, topics if existing is None else {*existing, *topics}, recorded)
    refused = {r.topic: r for r in resolution.refused if r.topic in topics}
    candidates = [t for t in topics if t not in refused and resolution.tables_of_topic(t)]
    if existing is not None:
        return Claims(tuple(candidates), tuple(refused.values()))
    constant = {spec.table for spec in config.tables if spec.topic_pattern and "{topic}" not in spec.table}
    joined: list[str] = []
    undecided: list[str] = []
    for topic in candidates:
        template = _pattern_spec(config, topic).table
        identifier = table_for(template, topic)
        fed = sorted(recorded(identifier))
        sure = "{topic}" not in template or (identifier not in constant and bool(fed) and fed[0] == topic)
        (joined if sure else undecided).append(topic)
    return Claims(tuple(joined), tuple(refused.values()), tuple(undecided))


def _pattern_spec(config: Config, topic: str) -> TableConfig:
    """The entry whose pattern takes `topic` (the first that matches)."""
    return next(spec for spec in config.tables if spec.topic_pattern and re.fullmatch(spec.topic_pattern, topic))


RESERVED_SUFFIXES = ("__dlq",)


def reserved_suffix(identifier: str) -> str | None:
    return next((suffix for suffix in RESERVED_SUFFIXES if identifier.endswith(suffix)), None)


def _refusals(matched: Sequence[tuple[str, str, TableConfig, str]], configured: Mapping[str, Sequence[str]],
              fed_by: Callable[[str], Collection[str]]) -> dict[str, Refusal]:
    refused: dict[str, Refusal] = {}
    shared: dict[str, list[str]] = {}  # tables of patterns without {topic}: every matching topic feeds them
    for topic, identifier, spec, _ in matched:
        if "{topic}" not in spec.table:
            shared.setdefault(identifier, []).append(topic)
    claims: dict[str, list[str]] = {}  # a per-topic table -> the topics whose names fold onto it
    for topic, identifier, spec, _ in matched:
        suffix = reserved_suffix(identifier)
        if suffix is not None:
            refused[topic] = Refusal(topic, identifier, f"its table name ends in {suffix}, reserved for the "
                                                        "dead letters of another table")
        elif "{topic}" in spec.table:
            claims.setdefault(identifier, []).append(topic)
    for identifier, topics in claims.items():
        others = [*configured.get(identifier, ()), *shared.get(identifier, ())]
        if identifier in configured or identifier in shared:
            for topic in topics:
                refused[topic] = Refusal(topic, identifier, "the table is fed by another entry of the config",
                                         ", ".join(others) or None)
            continue
        recorded = sorted(fed_by(identifier))
        # A table that has been fed stays its first topic's, even while that topic is away.
        owner = min(set(recorded) & set(topics), default=recorded[0]) if recorded else min(topics)
        for topic in topics:
            if topic != owner:
                refused[topic] = Refusal(topic, identifier, "its name folds onto the table of another topic", owner)
    return refused


def has_patterns(config: Config) -> bool:
    """Whether the tables depend on which topics exist (the caller then has to list them)."""
    return any(spec.topic_pattern for spec in config.tables)
