import pytest

from tabletopic.config import load_config
from tabletopic.exceptions import ConfigError
from tabletopic.routing import safe_name, subscription_pattern, table_for


def test_topic_names_become_safe_table_names():
    assert safe_name("Orders.EU-1") == "orders_eu_1"
    assert safe_name("2024--clicks") == "t_2024_clicks"
    assert table_for("raw.{topic}", "Shop.Orders") == "raw.shop_orders"
    assert subscription_pattern("orders-.*") == "^orders-.*$" and subscription_pattern("^a$") == "^a$"


@pytest.mark.parametrize(("table", "key"), [
    ({"table": "raw.{topic}", "topic_pattern": "("}, "tables[0].topic_pattern"),
    ({"table": "raw.{topic}", "topic": "t"}, "tables[0].table"),
])
def test_pattern_settings_are_checked(tmp_path, table, key):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap.servers": "x:1"}, "tables": [table]}))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.key == key
