import pytest

from tabletopic.config import env_overrides, load_config
from tabletopic.exceptions import ConfigError

BASE = {
    "kafka": {"bootstrap.servers": "127.0.0.1:9092"},
    "tables": [{"table": "ns.events", "topic": "events"}],
}


def write(tmp_path, text: str):
    path = tmp_path / "tabletopic.yaml"
    path.write_text(text)
    return path


def test_a_full_file_loads_with_pass_through_sections(tmp_path):
    path = write(tmp_path, """
kafka:
  bootstrap.servers: broker:9092
  security.protocol: SASL_SSL
group_id: g1
catalog:
  name: prod
  uri: http://rest:8181
  s3.endpoint: http://minio:9000
commit:
  interval_seconds: 10
tables:
  - table: analytics.orders
    topic: orders
    format: raw
    partition_by: ["day(_kafka_timestamp)", "bucket(16, id)"]
""")
    config = load_config(path, environ={})
    assert config.kafka == {"bootstrap.servers": "broker:9092", "security.protocol": "SASL_SSL"}
    assert config.catalog.name == "prod"
    assert config.catalog.properties == {"uri": "http://rest:8181", "s3.endpoint": "http://minio:9000"}
    assert config.commit.interval_seconds == 10.0
    assert config.tables[0].partition_by == ["day(_kafka_timestamp)", "bucket(16, id)"]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({**BASE, "comit": {}}, "comit"),
        ({**BASE, "commit": {"interval_seconds": "soon"}}, "commit.interval_seconds"),
        ({**BASE, "commit": {"intervall": 3}}, "commit.intervall"),
        ({**BASE, "tables": [{"topic": "events"}]}, "tables[0].table"),
        ({**BASE, "tables": [{"table": "ns.e", "topic": "events", "format": "xml"}]}, "tables[0].format"),
        ({**BASE, "tables": [{"table": "ns.e", "topic": "events", "format": "avro"}]}, "schema_registry.url"),
        ({**BASE, "tables": [{"table": "ns.e", "topic": "e", "partition_by": ["dya(ts)"]}]},
         "tables[0].partition_by[0]"),
        ({**BASE, "tables": []}, "tables"),
        ({"tables": BASE["tables"]}, "kafka.bootstrap.servers"),
        ({**BASE, "kafka": {"bootstrap.servers": "x:1", "enable.auto.commit": "true"}}, "kafka.enable.auto.commit"),
        ({**BASE, "http": {"request_timeout_seconds": 0}}, "http.request_timeout_seconds"),
        ({**BASE, "http": {"max_connections": 0}}, "http.max_connections"),
    ],
)
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError) as caught:
        load_config(flags=data, environ={})
    assert caught.value.key == key


def test_environment_overrides_the_file_and_flags_override_both(tmp_path):
    path = write(tmp_path, "kafka:\n  bootstrap.servers: file:9092\ntables:\n  - {table: ns.t, topic: t}\n")
    environ = {
        "TABLETOPIC_KAFKA__BOOTSTRAP_SERVERS": "env:9092",
        "TABLETOPIC_CATALOG__S3__ACCESS_KEY_ID": "AKIA",
        "TABLETOPIC_COMMIT__INTERVAL_SECONDS": "7.5",
        "TABLETOPIC_GROUP_ID": "from-env",
    }
    config = load_config(path, environ=environ)
    assert config.kafka["bootstrap.servers"] == "env:9092"
    assert config.catalog.properties["s3.access-key-id"] == "AKIA"
    assert config.commit.interval_seconds == 7.5
    assert config.group_id == "from-env"
    flagged = load_config(path, flags={"kafka": {"bootstrap.servers": "flag:9092"}}, environ=environ)
    assert flagged.kafka["bootstrap.servers"] == "flag:9092"


def test_env_override_names_map_like_pyiceberg():
    assert env_overrides({"TABLETOPIC_CATALOG__URI": "sqlite:///x", "OTHER": "1"}) == {"catalog": {"uri": "sqlite:///x"}}


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml", environ={})
    assert caught.value.key == "--config"


def test_the_secret_folders_variable_is_not_a_config_override():
    assert env_overrides({"TABLETOPIC_SECRET_DIRS": "/a:/b", "TABLETOPIC_GROUP_ID": "g"}) == {"group_id": "g"}


def _table(**settings):
    return {**BASE, "tables": [{"table": "ns.e", "topic": "e", **settings}]}


@pytest.mark.parametrize(
    ("settings", "key", "says"),
    [
        ({"mode": "append", "envelope": "debezium"}, "tables[0].mode", "mode upsert"),
        ({"mode": "upsert", "metadata_columns": False}, "tables[0].metadata_columns", "partition and offset"),
        ({"mode": "upsert", "route_field": "r", "route_tables": {"a": "ns.a"}}, "tables[0].route_field", "unrouted"),
        ({"mode": "upsert", "topics": ["e", "f"]}, "tables[0].topics", "one topic"),
        ({"mode": "upsert", "key": ["id", "id"]}, "tables[0].key", "twice"),
        ({"mode": "upsert", "key": ["_kafka_offset"]}, "tables[0].key", "metadata"),
        ({"mode": "upsert", "format": "raw", "key": ["value"]}, "tables[0].key", "raw"),
        ({"envelope": "debezium", "key": ["id"]}, "tables[0].key", "Kafka key"),
        ({"envelope": "debezium", "format": "raw"}, "tables[0].envelope", "json or avro"),
        ({"cdc_columns": {"op": "_op"}}, "tables[0].cdc_columns", "debezium"),
        ({"envelope": "debezium", "cdc_columns": {"txid": "_t"}}, "tables[0].cdc_columns.txid", "unknown"),
        ({"key": ["id"]}, "tables[0].key", "mode: upsert"),
        ({"mode": "upsert", "key": ["id"], "partition_by": ["day(_kafka_timestamp)"]}, "tables[0].partition_by[0]",
         "not computed from the key"),
        ({"mode": "upsert", "key_format": "string", "partition_by": ["bucket(4, id)"]}, "tables[0].partition_by[0]",
         "bucket(16, _key)"),
    ],
)
def test_upsert_settings_that_cannot_hold_are_refused(settings, key, says):
    with pytest.raises(ConfigError) as caught:
        load_config(flags=_table(**settings), environ={})
    assert caught.value.key == key
    assert says in caught.value.reason


def test_upsert_settings_the_table_records():
    [table] = load_config(flags=_table(envelope="debezium"), environ={}).tables
    assert table.is_upsert
    assert table.upsert is not None and table.upsert.properties() == {
        "tabletopic.mode": "upsert", "tabletopic.key-source": "kafka-key", "tabletopic.key-format": "json",
        "tabletopic.envelope": "debezium"}
    [table] = load_config(flags=_table(mode="upsert", key=["id"], partition_by=["bucket(8, id)"]), environ={}).tables
    assert table.upsert is not None and table.upsert.key_source == "value"
    [table] = load_config(flags=_table(), environ={}).tables
    assert table.upsert is None


@pytest.mark.parametrize(
    ("data", "key", "suggested"),
    [
        ({**BASE, "commit": {"interval_second": 5}}, "commit.interval_second", "interval_seconds"),
        ({**BASE, "tables": [{"table": "ns.e", "topic": "e", "partiton_by": ["bucket(4, id)"]}]},
         "tables[0].partiton_by", "partition_by"),
        ({**BASE, "maintenance": {"keep_snapshot": 5}}, "maintenance.keep_snapshot", "keep_snapshots"),
        ({**BASE, "tabels": []}, "tabels", "tables"),
    ],
)
def test_a_misspelt_key_is_refused_with_the_nearest_known_one(data, key, suggested):
    with pytest.raises(ConfigError) as caught:
        load_config(flags=data, environ={})
    assert caught.value.key == key
    assert f"did you mean {suggested!r}?" in caught.value.reason


def test_an_unknown_key_with_nothing_near_is_refused_without_a_guess():
    with pytest.raises(ConfigError) as caught:
        load_config(flags={**BASE, "commit": {"zzz": 1}}, environ={})
    assert caught.value.reason == "unknown key"


@pytest.mark.parametrize("name", ["shop..orders", "shop.", ".orders", "orders", "shop.my orders", "shop.\torders", ""])
def test_a_malformed_table_name_is_refused(name):
    with pytest.raises(ConfigError) as caught:
        load_config(flags={**BASE, "tables": [{"table": name, "topic": "e"}]}, environ={})
    assert caught.value.key == "tables[0].table"
    assert "NAMESPACE.TABLE" in caught.value.reason


def test_a_malformed_routed_table_name_is_refused():
    table = {"table": "ns.e", "topic": "e", "route_field": "r", "route_tables": {"eu": "ns..eu"}}
    with pytest.raises(ConfigError) as caught:
        load_config(flags={**BASE, "tables": [table]}, environ={})
    assert caught.value.key == "tables[0].route_tables.eu"


def test_a_yaml_syntax_error_names_the_file_and_line_in_one_line(tmp_path):
    path = write(tmp_path, "kafka:\n  bootstrap.servers: x:1\ntables:\n  - table: ns.t\n    topic: [t\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.key == "--config"
    assert "\n" not in str(caught.value)
    assert f"{path}, line " in caught.value.reason


def test_secrets_in_pass_through_sections_never_show_in_the_repr():
    config = load_config(flags={**BASE, "kafka": {"bootstrap.servers": "x:1", "sasl.password": "hunter2"},
                                "catalog": {"uri": "http://rest", "s3.secret-access-key": "s3cr3t"},
                                "schema_registry": {"url": "http://reg", "properties": {
                                    "basic.auth.user.info": "u:pw"}}}, environ={})
    shown = repr(config)
    assert "hunter2" not in shown and "s3cr3t" not in shown and "u:pw" not in shown
    assert config.kafka["sasl.password"] == "hunter2"  # still the value to the libraries
    assert {"hunter2", "s3cr3t", "u:pw"} <= config.secret_values
    assert all(type(value) is str for value in config.secret_values)  # masking matches their plain repr


def test_yaml_booleans_and_numbers_pass_through_as_the_strings_libraries_want():
    config = load_config(flags={**BASE, "kafka": {"bootstrap.servers": "x:1", "enable.idempotence": True,
                                                  "linger.ms": 5}}, environ={})
    assert config.kafka["enable.idempotence"] == "true"
    assert config.kafka["linger.ms"] == "5"


def test_a_command_needs_only_what_it_uses():
    catalog_only = load_config(flags={"catalog": {"warehouse": "/tmp/w"}}, environ={}, needs=frozenset())
    assert catalog_only.tables == []
    avro = {"tables": [{"table": "ns.e", "topic": "e", "format": "avro"}]}
    assert load_config(flags=avro, environ={}, needs=frozenset({"tables"})).tables[0].format == "avro"
    with pytest.raises(ConfigError) as caught:
        load_config(flags=avro, environ={}, needs=frozenset({"tables", "registry"}))
    assert caught.value.key == "schema_registry.url"


def test_an_error_in_a_setting_a_flag_filled_names_the_flag():
    flags = {**BASE, "tables": [{"table": "ns..e", "topic": "e"}], "schema_registry": {"url": 5}}
    with pytest.raises(ConfigError) as caught:
        load_config(flags=flags, environ={}, flag_names={"tables[0].table": "--table"})
    assert caught.value.key == "--table"
    with pytest.raises(ConfigError) as caught:
        load_config(flags={**BASE, "commit": {"interval_seconds": 0}}, environ={},
                    flag_names={"commit.interval_seconds": "--commit-interval"})
    assert caught.value.key == "--commit-interval"
    assert caught.value.reason == "must be above 0"


@pytest.mark.parametrize("section", ["catalog", "schema_registry", "commit", "consumer", "maintenance", "http"])
def test_a_section_with_nothing_under_it_takes_its_defaults(tmp_path, section):
    path = write(tmp_path, "kafka: {bootstrap.servers: 'x:1'}\ntables: [{table: ns.t, topic: t}]\n"
                           f"{section}:\n#  a commented-out setting\n")
    config = load_config(path, environ={})
    assert getattr(config, section) is not None


def test_workers_zero_means_one_per_cpu_as_before():
    assert load_config(flags={**BASE, "workers": 0}, environ={}).workers == 0
    assert load_config(flags=BASE, environ={"TABLETOPIC_WORKERS": "0"}).workers == 0


def test_routes_keyed_by_yaml_booleans_are_the_routes_of_true_and_false(tmp_path):
    path = write(tmp_path, "kafka: {bootstrap.servers: 'x:1'}\ntables:\n  - table: ns.t\n    topic: t\n"
                           "    route_field: is_test\n    route_tables: {true: test.events, false: prod.events}\n")
    assert load_config(path, environ={}).tables[0].route_tables == {"True": "test.events", "False": "prod.events"}


@pytest.mark.parametrize(("key", "value"), [("consumer", {"poll_timeout_seconds": 0}),
                                            ("maintenance", {"check_interval_seconds": 0, "keep_snapshots": 0}),
                                            ("shutdown_timeout_seconds", 0), ("http", {"stall_seconds": 0})])
def test_zeros_that_ran_before_still_load(key, value):
    load_config(flags={**BASE, key: value}, environ={})


@pytest.mark.parametrize(
    ("settings", "key", "says"),
    [
        ({"json_schema": True, "format": "avro"}, "tables[0].json_schema", "format is avro"),
        ({"json_schema": True, "envelope": "debezium"}, "tables[0].json_schema", "debezium"),
        ({"json_schema": True, "route_field": "r"}, "tables[0].route_field", "framed"),
        ({"json_schema": True, "rename_columns": {"a": "b"}}, "tables[0].rename_columns", "schema's names"),
        ({"json_schema": True, "column_names": "lowercase"}, "tables[0].column_names", "schema's names"),
        ({"json_schema": True}, "schema_registry.url", "json_schema: true"),
    ],
)
def test_json_schema_settings_that_cannot_hold_are_refused(settings, key, says):
    with pytest.raises(ConfigError) as caught:
        load_config(flags=_table(**settings), environ={})
    assert caught.value.key == key
    assert says in caught.value.reason


def test_a_json_schema_table_loads_with_a_registry():
    config = load_config(flags={**_table(json_schema=True), "schema_registry": {"url": "http://registry"}},
                         environ={})
    assert config.tables[0].json_schema
