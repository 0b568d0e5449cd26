"""`tabletopic run`: consume topics and commit them to tables, until stopped."""

from __future__ import annotations

import argparse
import threading
from typing import Any

from tabletopic import logs
from tabletopic.cli.common import (
    FORMATS,
    Flags,
    add_command,
    add_connection_flags,
    connection_flags,
    load,
    schema_registry_flag,
    table_name,
)
from tabletopic.config import Config, default_workers
from tabletopic.core.exits import ExitCode
from tabletopic.core.stop_flag import StopFlag
from tabletopic.exceptions import ConfigError

EXAMPLE = """\
  tabletopic run --config tabletopic.yaml
  tabletopic run --bootstrap-servers localhost:9092 --topic orders --table shop.orders --warehouse ./warehouse"""


def exit_codes_text() -> str:
    """Every exit code, from the enum: CODE  NAME  meaning."""
    width = max(len(code.name) for code in ExitCode)
    return "Exit codes:\n" + "\n".join(f"  {code.value:>3}  {code.name:<{width}}  {code.meaning}" for code in ExitCode)


def add(commands: Any) -> None:
    parser = add_command(commands, "run", "consume topics and commit them to tables", EXAMPLE)
    parser.epilog = f"{parser.epilog}\n\n{exit_codes_text()}"
    add_connection_flags(parser)
    parser.add_argument("--topic", help="one topic to read (flags-only form, with --table)")
    parser.add_argument("--table", type=table_name, help="its table, NAMESPACE.TABLE (flags-only form, with --topic)")
    parser.add_argument("--format", choices=FORMATS, default="json", help="the topic's record format (flags-only form)")
    parser.add_argument("--schema-registry", help="Schema Registry URL (format avro)")
    parser.add_argument("--partition-by", action="append",
                        help="partition expression, e.g. 'day(_kafka_timestamp)'; may be repeated (flags-only form)")
    parser.add_argument("--commit-interval", type=float,
                        help="seconds between commits (default: the config's commit.interval_seconds)")
    parser.add_argument("--workers", type=int,
                        help="worker processes in the group (default: the config's workers, else the CPUs it may use)")
    parser.set_defaults(handler=command)


def run_flags(args: argparse.Namespace) -> Flags:
    """The flags-only form of `run`, as config data."""
    flags = connection_flags(args)
    schema_registry_flag(flags, args)
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError("--workers", "must be 1 or more")
        flags.put(("workers",), args.workers, "--workers")
    if args.commit_interval is not None:
        flags.put(("commit", "interval_seconds"), args.commit_interval, "--commit-interval")
    if args.topic or args.table:
        if not (args.topic and args.table):
            raise ConfigError("--table" if args.topic else "--topic", "required together with " +
                              ("--topic" if args.topic else "--table"))
        table: dict[str, Any] = {"table": args.table, "topic": args.topic, "format": args.format}
        names = {"table": "--table", "topic": "--topic", "format": "--format"}
        if args.partition_by:
            table["partition_by"] = args.partition_by
            names["partition_by"] = "--partition-by"
        flags.table(table, names)
    return flags


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.observe import multiproc

    metrics_dir = multiproc.prepare()  # before anything imports prometheus_client
    try:
        return _serve(args, argv)
    finally:
        multiproc.remove(metrics_dir)


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    """The pool's parent (or the one worker) serves HTTP and runs maintenance; workers only write."""
    config = load(args, run_flags(args), without_tables="list tables in --config, or give --topic and --table")
    logs.configure(config.log_level, secrets=config.secret_values)
    workers = config.workers or default_workers()
    server = None
    if config.http.enabled:
        from tabletopic.observe.http import serve

        server = serve(config, expected_workers=workers, pool=workers > 1)
    maintenance = _start_maintenance(config)
    try:
        if workers > 1:
            from tabletopic.supervisor import Supervisor

            worker_argv = [*argv, "--workers", "1"]  # the last --workers wins
            return Supervisor(worker_argv, workers, config.shutdown_timeout_seconds,
                              probing=server is not None).run()
        return _run(config)
    finally:
        if maintenance is not None:
            maintenance.stop()
        if server is not None:
            server.shutdown()


def _start_maintenance(config: Config) -> Any:
    if not config.maintenance.enabled:
        return None
    from tabletopic.compaction.process import MaintenanceProcess

    return MaintenanceProcess(config).start()


def _run(config: Config) -> int:
    from tabletopic.supervisor import WorkerStop, probing_worker, supervisor_pid

    # Before the service opens anything: a stop asked from here on is kept, and bounded by the shutdown timeout.
    stop = WorkerStop(config.shutdown_timeout_seconds, supervisor=supervisor_pid())
    stop.install()
    if probing_worker():
        _publish_probes(config, stop.flag)
    from tabletopic.service import Service

    try:
        return Service(config, stopping=stop.flag).run()
    finally:
        # The service stopped within its bound; what follows (maintenance, HTTP) has timeouts of its own.
        stop.disarm()


def _publish_probes(config: Config, flag: StopFlag) -> None:
    """The pool's probes, run here for the supervisor's /readyz (it loads no catalog or Kafka client)."""
    from tabletopic.observe.probes import broker_probe, catalog_probe, publish_forever

    probes = {"catalog": catalog_probe(config.catalog), "broker": broker_probe(config.kafka)}
    threading.Thread(target=publish_forever, args=(probes, lambda: flag.requested), name="tabletopic-probes",
                     daemon=True).start()
