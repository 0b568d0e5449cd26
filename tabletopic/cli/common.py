"""What the commands share: the help format, the connection flags and how flags become config data
(with the flag each config path came from, so an error names what the user typed), timestamps."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tabletopic.config import Config, TableConfig, load_config
from tabletopic.config_rules import table_name_problem
from tabletopic.exceptions import ConfigError

# What a command uses, for load_config's `needs`: the broker, at least one table, the Schema Registry of Avro tables.
KAFKA = "kafka"
TABLES = "tables"
REGISTRY = "registry"
EVERYTHING = frozenset({KAFKA, TABLES, REGISTRY})
CONFIG_ENV = "TABLETOPIC_CONFIG"
FORMATS = ("json", "avro", "protobuf", "raw")  # a record format, as the config's tables[].format


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help, unless it has none worth saying (None, an off switch);
    descriptions and epilogs (the examples) as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


def add_command(commands: Any, name: str, summary: str, example: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A (sub)command whose help shows `summary` and then its example(s)."""
    return commands.add_parser(
        name, help=summary, description=kwargs.pop("description", summary[0].upper() + summary[1:] + "."),
        epilog="Example:\n" + example.strip("\n"), formatter_class=HelpFormatter, **kwargs)


def table_name(text: str) -> str:
    """argparse `type=` of a flag naming a table: NAMESPACE.TABLE, refused as the config refuses a bad one."""
    problem = table_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"YAML config file (see docs/configuration.md); default: ${CONFIG_ENV}")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT] "
                                                    "(default: the config's kafka.bootstrap.servers)")
    parser.add_argument("--catalog-uri", help="pyiceberg catalog uri (default: the config's catalog.uri, else an "
                                              "embedded SQLite catalog in the warehouse)")
    parser.add_argument("--warehouse", help="warehouse folder or s3://bucket/prefix "
                                            "(default: the config's catalog.warehouse, else ./warehouse)")
    parser.add_argument("--group-id", help="consumer group; also names the offsets key in snapshots "
                                           "(default: the config's group_id, else tabletopic)")


@dataclass
class Flags:
    """Config data filled from flags (they win over the file and the environment), and for each
    config path the flag that filled it."""

    data: dict[str, Any] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def put(self, path: tuple[str, ...], value: Any, flag: str) -> None:
        """`path`: the config keys down to the value; a key may hold dots (kafka's `bootstrap.servers`)."""
        section = self.data
        for key in path[:-1]:
            section = section.setdefault(key, {})
        section[path[-1]] = value
        self.names[".".join(path)] = flag

    def table(self, entry: dict[str, Any], flags: dict[str, str]) -> None:
        """The config's only table, from flags; `flags`: its key -> the flag that gave it."""
        self.data[TABLES] = [entry]
        self.names.update({f"{TABLES}[0].{key}": flag for key, flag in flags.items()})


def connection_flags(args: argparse.Namespace) -> Flags:
    """Broker, group and catalog flags as config data."""
    flags = Flags()
    if args.bootstrap_servers:
        flags.put((KAFKA, "bootstrap.servers"), args.bootstrap_servers, "--bootstrap-servers")
    if args.group_id:
        flags.put(("group_id",), args.group_id, "--group-id")
    if args.catalog_uri:
        flags.put(("catalog", "uri"), args.catalog_uri, "--catalog-uri")
    if args.warehouse:
        flags.put(("catalog", "warehouse"), args.warehouse, "--warehouse")
    return flags


def schema_registry_flag(flags: Flags, args: argparse.Namespace) -> None:
    if args.schema_registry:
        flags.put(("schema_registry", "url"), args.schema_registry, "--schema-registry")


def config_path(args: argparse.Namespace) -> str | None:
    return args.config or os.environ.get(CONFIG_ENV)


def load(args: argparse.Namespace, flags: Flags, needs: Iterable[str] = EVERYTHING,
         without_tables: str = "list the table under tables: in --config") -> Config:
    """The config of this command: file, environment, flags; only the sections it `needs` required.
    `without_tables`: what to say when it needs tables and none are given (each command its own flags)."""
    try:
        return load_config(config_path(args), flags.data, None, needs=frozenset(needs),  # type: ignore[arg-type]
                           flag_names=flags.names)
    except ConfigError as exc:
        if exc.key == TABLES:
            raise ConfigError(TABLES, f"required: {without_tables}") from None
        raise


def table_in(config: Config, table: str) -> TableConfig | None:
    """The config's entry for `table`, if it lists it."""
    return next((spec for spec in config.tables if spec.table == table), None)


def timestamp_ms(flag: str, text: str) -> int:
    """ISO-8601 (Z or an offset; UTC when it has neither) as epoch milliseconds."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(flag, str(exc)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)
