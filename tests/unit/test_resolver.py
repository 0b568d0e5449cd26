"""The tables a config writes: configured, routed (targets and default), per-topic patterns, dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tabletopic.config import Config, load_config
from tabletopic.resolver import claim, has_patterns, resolve


def config_of(tmp_path: Path, *tables: dict[str, Any]) -> Config:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap.servers": "x:1"}, "tables": list(tables)}))
    return load_config(path, environ={})


def test_a_plain_table_and_its_dead_letter_table(tmp_path):
    config = config_of(tmp_path, {"table": "a.plain", "topics": ["t1", "t2"]},
                       {"table": "a.strict", "topic": "t3", "errors": "fail"})
    resolution = resolve(config)
    assert [(t.identifier, t.topics, t.dead_letters) for t in resolution.tables] == [
        ("a.plain", ("t1", "t2"), "a.plain__dlq"), ("a.strict", ("t3",), None)]
    assert resolution.identifiers() == ["a.plain", "a.plain__dlq", "a.strict"]
    assert not has_patterns(config)


def test_route_targets_and_the_default_table_share_the_topic(tmp_path):
    config = config_of(tmp_path, {"table": "sales.other", "topic": "sales", "route_field": "region",
                                  "route_tables": {"eu": "sales.eu", "us": "sales.us", "xx": "sales.other"}})
    resolution = resolve(config)
    assert resolution.identifiers() == ["sales.other", "sales.other__dlq", "sales.eu", "sales.eu__dlq", "sales.us",
                                        "sales.us__dlq"]
    assert [t.identifier for t in resolution.tables_of_topic("sales")] == ["sales.other", "sales.eu", "sales.us"]
    eu, other = resolution.table("sales.eu"), resolution.table("sales.other")
    assert eu is not None and other is not None and eu.routed and other.routed
    assert eu.spec.route_field is None and eu.spec.table == "sales.eu"
    keys = ["eu", "us", None, "xx", "fr", "eu"]
    assert eu.share(keys) == [0, 5]
    assert other.share(keys) == [2, 3, 4]  # no field, a value routed to the default, an unknown value


def test_pattern_tables_come_from_the_topics_that_exist(tmp_path):
    config = config_of(tmp_path, {"table": "raw.{topic}", "topic_pattern": "orders\\..*"},
                       {"table": "raw.all_clicks", "topic_pattern": "clicks-.*"},
                       {"table": "raw.pinned", "topic": "orders.pinned"})
    assert has_patterns(config)
    assert resolve(config).identifiers() == ["raw.pinned", "raw.pinned__dlq"]  # no topic listed: no pattern table
    resolution = resolve(config, ["orders.EU", "orders.pinned", "clicks-a", "clicks-b", "other", "xorders.x"])
    assert resolution.identifiers() == ["raw.pinned", "raw.pinned__dlq", "raw.all_clicks", "raw.all_clicks__dlq",
                                        "raw.orders_eu", "raw.orders_eu__dlq"]
    clicks, eu = resolution.table("raw.all_clicks"), resolution.table("raw.orders_eu")
    assert clicks is not None and clicks.topics == ("clicks-a", "clicks-b") and clicks.pattern == "clicks-.*"
    assert eu is not None and eu.spec.table == "raw.orders_eu" and eu.spec.topic == "orders.EU"
    assert eu.spec.topic_pattern is None and not eu.routed
    # a topic a table names is never taken by a pattern
    assert [t.identifier for t in resolution.tables_of_topic("orders.pinned")] == ["raw.pinned"]


def test_the_first_matching_pattern_wins(tmp_path):
    config = config_of(tmp_path, {"table": "one.{topic}", "topic_pattern": "a.*"},
                       {"table": "two.{topic}", "topic_pattern": "ab.*"})
    assert [t.identifier for t in resolve(config, ["abc"]).tables] == ["one.abc"]


def test_topics_whose_names_fold_onto_one_table_the_first_by_name_keeps_it(tmp_path):
    config = config_of(tmp_path, {"table": "raw.{topic}", "topic_pattern": "shop\\..*"})
    topics = ["shop.orders", "shop.Orders", "shop.ORDERS!!", "shop.items"]
    resolution = resolve(config, topics)
    assert [(t.identifier, t.topics) for t in resolution.tables] == [
        ("raw.shop_orders", ("shop.ORDERS!!",)), ("raw.shop_items", ("shop.items",))]
    assert sorted((r.topic, r.table, r.owner) for r in resolution.refused) == [
        ("shop.Orders", "raw.shop_orders", "shop.ORDERS!!"), ("shop.orders", "raw.shop_orders", "shop.ORDERS!!")]
    # the set decides, not the order the topics are seen in
    assert resolve(config, reversed(topics)) == resolution


def test_a_table_that_has_been_fed_stays_its_first_topics(tmp_path):
    config = config_of(tmp_path, {"table": "raw.{topic}", "topic_pattern": "shop\\..*"})
    fed = {"raw.shop_orders": {"shop.orders"}}
    resolution = resolve(config, ["shop.ORDERS!!", "shop.orders"], lambda table: fed.get(table, ()))
    assert [t.topics for t in resolution.tables] == [("shop.orders",)]
    assert [(r.topic, r.owner) for r in resolution.refused] == [("shop.ORDERS!!", "shop.orders")]
    # even while its topic is away
    alone = resolve(config, ["shop.ORDERS!!"], lambda table: fed.get(table, ()))
    assert alone.tables == () and [r.topic for r in alone.refused] == ["shop.ORDERS!!"]


def test_a_topic_whose_table_is_a_dead_letter_table_or_a_configured_one_is_refused(tmp_path):
    config = config_of(tmp_path, {"table": "shop.orders", "topic": "orders"},
                       {"table": "shop.{topic}", "topic_pattern": "[a-z_.]+"})
    resolution = resolve(config, ["orders", "orders__dlq", "shop.x.orders__dlq", "orders.", "fine"])
    assert resolution.identifiers() == ["shop.orders", "shop.orders__dlq", "shop.fine", "shop.fine__dlq"]
    refused = {r.topic: r for r in resolution.refused}
    assert sorted(refused) == ["orders.", "orders__dlq", "shop.x.orders__dlq"]
    assert "__dlq" in refused["orders__dlq"].reason and refused["orders__dlq"].table == "shop.orders__dlq"
    assert refused["orders."].table == "shop.orders" and refused["orders."].owner == "orders"


def test_topics_folding_onto_a_table_not_yet_committed_stay_undecided_while_the_topics_cannot_be_listed(tmp_path):
    """Two writers, each assigned one of two topics folding onto one table: without the list neither may
    keep it (each would keep its own), both wait; with it both name the same owner."""
    config = config_of(tmp_path, {"table": "raw.{topic}", "topic_pattern": "shop\\..*"})
    never_fed = lambda table: ()  # noqa: E731
    for mine in ("shop.orders", "shop.ORDERS!!"):
        unlisted = claim(config, [mine], None, never_fed)
        assert (unlisted.joined, unlisted.refused, unlisted.undecided) == ((), (), (mine,))
    listed = ["shop.orders", "shop.ORDERS!!"]
    assert claim(config, ["shop.ORDERS!!"], listed, never_fed).joined == ("shop.ORDERS!!",)
    assert [r.owner for r in claim(config, ["shop.orders"], listed, never_fed).refused] == ["shop.ORDERS!!"]


def test_without_the_list_only_what_no_other_topic_could_change_is_decided(tmp_path):
    config = config_of(tmp_path, {"table": "shop.orders", "topic": "orders"},
                       {"table": "raw.all", "topic_pattern": "all\\..*"},
                       {"table": "raw.other", "topic_pattern": "other\\..*"},
                       {"table": "raw.{topic}", "topic_pattern": "[a-z_.]+"})
    fed = {"raw.shop_orders": {"shop.orders", "shop.orders_"}, "raw.kept": {"kept"}, "raw.other": {"other"}}
    topics = ["all.x", "x__dlq", "shop.orders", "shop.orders_", "shop.orders__", "kept", "other", "fresh"]
    claims = claim(config, topics, None, lambda table: fed.get(table, ()))
    # a table without {topic}; the first its committed offsets name (a lower name could only be one of them)
    assert claims.joined == ("all.x", "shop.orders", "kept")
    # a reserved suffix; a lower recorded topic known to exist; a topic the offsets do not name
    assert sorted(r.topic for r in claims.refused) == ["shop.orders_", "shop.orders__", "x__dlq"]
    # no offsets yet, or a table a pattern without {topic} may feed once a matching topic is listed
    assert claims.undecided == ("other", "fresh")
