"""One adapter per query engine, all answering the same questions in canonical form (dataset.canonical)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Protocol

from pyiceberg.catalog import load_catalog

from tabletopic.local.duckdb_extensions import extension_path
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tabletopic.local.trino import LocalTrino
from tests.engines.dataset import canonical


class Engine(Protocol):
    name: str

    def rows(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        """Every row of `table`, these columns, in canonical form."""
        ...

    def count(self, table: str, snapshot_id: int | None = None) -> int:
        """Rows now, or as of an earlier snapshot (time travel)."""
        ...

    def count_by(self, table: str, column: str) -> dict[Any, int]:
        ...

    def scanned(self, table: str, column: str, value: str) -> tuple[int, int]:
        """(what a scan filtered on `column = value` reads, what an unfiltered scan reads), in files or rows."""
        ...


class PyIcebergEngine:
    name = "pyiceberg"

    def __init__(self, rest: LocalRestCatalog) -> None:
        self.catalog = load_catalog("lake", **rest.client_properties())

    def rows(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        arrow = self.catalog.load_table(table).scan(selected_fields=tuple(columns)).to_arrow()
        return [{k: canonical(v) for k, v in row.items()} for row in arrow.to_pylist()]

    def count(self, table: str, snapshot_id: int | None = None) -> int:
        return self.catalog.load_table(table).scan(snapshot_id=snapshot_id).count()

    def count_by(self, table: str, column: str) -> dict[Any, int]:
        values = self.catalog.load_table(table).scan(selected_fields=(column,)).to_arrow()[column]
        counts = values.value_counts().to_pylist()
        return {c["values"]: c["counts"] for c in counts}

    def scanned(self, table: str, column: str, value: str) -> tuple[int, int]:
        loaded = self.catalog.load_table(table)
        filtered = len(list(loaded.scan(row_filter=f"{column} == '{value}'").plan_files()))
        return filtered, len(list(loaded.scan().plan_files()))


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, rest: LocalRestCatalog) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET autoinstall_known_extensions=false; SET autoload_known_extensions=false")
        self.con.execute("SET TimeZone='UTC'")
        for extension in ("httpfs", "avro", "iceberg"):
            self.con.execute(f"LOAD '{extension_path(extension, duckdb.__version__)}'")
        endpoint = rest.s3.endpoint.removeprefix("http://")
        self.con.execute(
            f"CREATE SECRET lake_s3 (TYPE s3, PROVIDER config, KEY_ID '{ACCESS_KEY}', SECRET '{SECRET_KEY}', "
            f"REGION '{REGION}', ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"
        )
        self.con.execute(f"ATTACH 'warehouse' AS lake (TYPE iceberg, ENDPOINT '{rest.uri}', AUTHORIZATION_TYPE 'none')")

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def rows(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        result = self._query(f"SELECT {', '.join(_quote(c) for c in columns)} FROM lake.{table}")
        return [{c: canonical(v) for c, v in zip(columns, row, strict=True)} for row in result]

    def count(self, table: str, snapshot_id: int | None = None) -> int:
        at = f" AT (VERSION => {snapshot_id})" if snapshot_id is not None else ""
        return int(self._query(f"SELECT count(*) FROM lake.{table}{at}")[0][0])

    def count_by(self, table: str, column: str) -> dict[Any, int]:
        return dict(self._query(f"SELECT {column}, count(*) FROM lake.{table} GROUP BY 1"))  # type: ignore[arg-type]

    def scanned(self, table: str, column: str, value: str) -> tuple[int, int]:
        def files_read(where: str) -> int:
            # max() over a data column forces a scan (a bare count(*) may come from metadata).
            plan = self._query(f"EXPLAIN ANALYZE SELECT max(_kafka_offset) FROM lake.{table}{where}")[0][1]
            found = re.search(r"Total Files Read: (\d+)", plan)
            assert found is not None, plan
            return int(found.group(1))

        return files_read(f" WHERE {column} = '{value}'"), files_read("")


class SparkEngine:
    name = "spark"

    def __init__(self, rest: LocalRestCatalog) -> None:
        import os

        from pyspark.sql import SparkSession

        from tabletopic.local import spark

        os.environ.setdefault("JAVA_HOME", _java17_home())
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # loopback only, whatever the host name resolves to
        prefix = "spark.sql.catalog.lake"
        builder = (
            SparkSession.builder.master("local[2]").appName("tabletopic-engines")
            .config("spark.driver.memory", "1g").config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "2").config("spark.sql.session.timeZone", "UTC")
            .config("spark.jars", ",".join(str(jar) for jar in spark.fetch()))
            .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
            .config(prefix, "org.apache.iceberg.spark.SparkCatalog")
            .config(f"{prefix}.type", "rest").config(f"{prefix}.uri", rest.uri)
            .config(f"{prefix}.io-impl", "org.apache.iceberg.aws.s3.S3FileIO")
            .config(f"{prefix}.s3.endpoint", rest.s3.endpoint).config(f"{prefix}.s3.path-style-access", "true")
            .config(f"{prefix}.s3.access-key-id", ACCESS_KEY).config(f"{prefix}.s3.secret-access-key", SECRET_KEY)
            .config(f"{prefix}.client.region", REGION)
        )
        self.session = builder.getOrCreate()

    def close(self) -> None:
        self.session.stop()

    def rows(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        frame = self.session.sql(f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM lake.{table}")
        return [{c: canonical(row[c]) for c in columns} for row in frame.collect()]

    def count(self, table: str, snapshot_id: int | None = None) -> int:
        version = f" VERSION AS OF {snapshot_id}" if snapshot_id is not None else ""
        return int(self.session.sql(f"SELECT count(*) FROM lake.{table}{version}").collect()[0][0])

    def count_by(self, table: str, column: str) -> dict[Any, int]:
        rows = self.session.sql(f"SELECT {column}, count(*) FROM lake.{table} GROUP BY 1").collect()
        return {row[0]: row[1] for row in rows}

    def scanned(self, table: str, column: str, value: str) -> tuple[int, int]:
        return (self._data_files_read(f"SELECT * FROM lake.{table} WHERE {column} = '{value}'"),
                self._data_files_read(f"SELECT * FROM lake.{table}"))

    def _data_files_read(self, sql: str) -> int:
        """Iceberg's `resultDataFiles` scan metric of the query's BatchScan (adaptive execution off, so the
        executed plan is the one that ran)."""
        self.session.conf.set("spark.sql.adaptive.enabled", "false")
        try:
            frame = self.session.sql(sql)
            frame.collect()
            pending = [frame._jdf.queryExecution().executedPlan()]
            while pending:
                node = pending.pop()
                if "BatchScan" in node.nodeName():
                    return int(node.metrics().apply("resultDataFiles").value())
                children = node.children().iterator()
                while children.hasNext():
                    pending.append(children.next())
        finally:
            self.session.conf.set("spark.sql.adaptive.enabled", "true")
        raise AssertionError(f"no BatchScan in the plan of {sql}")


class TrinoEngine:
    name = "trino"

    def __init__(self, server: LocalTrino) -> None:
        from trino.dbapi import connect

        self.connection = connect(host="127.0.0.1", port=server.port, user="tests", catalog="lake")

    def close(self) -> None:
        self.connection.close()

    def _query(self, sql: str) -> tuple[list[Any], dict[str, Any]]:
        from trino.exceptions import TrinoQueryError

        # A fresh single-node Trino answers SELECT 1 before it schedules splits on itself.
        deadline = time.monotonic() + 60
        while True:
            cursor = self.connection.cursor()
            try:
                rows = cursor.execute(sql).fetchall()
                return rows, dict(cursor.stats)
            except TrinoQueryError as exc:
                if exc.error_name != "NO_NODES_AVAILABLE" or time.monotonic() > deadline:
                    raise
                time.sleep(1)
            finally:
                cursor.close()

    def rows(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        result, _ = self._query(f"SELECT {', '.join(_quote(c) for c in columns)} FROM lake.{table}")
        return [{c: canonical(v) for c, v in zip(columns, row, strict=True)} for row in result]

    def count(self, table: str, snapshot_id: int | None = None) -> int:
        version = f" FOR VERSION AS OF {snapshot_id}" if snapshot_id is not None else ""
        return int(self._query(f"SELECT count(*) FROM lake.{table}{version}")[0][0][0])

    def count_by(self, table: str, column: str) -> dict[Any, int]:
        result, _ = self._query(f"SELECT {_quote(column)}, count(*) FROM lake.{table} GROUP BY 1")
        return {row[0]: row[1] for row in result}

    def scanned(self, table: str, column: str, value: str) -> tuple[int, int]:
        """Rows the scan read (Trino's processedRows): a pruned scan never reads the other partitions."""
        def processed(where: str) -> int:
            _, stats = self._query(f"SELECT max(_kafka_offset) FROM lake.{table}{where}")
            return int(stats["processedRows"])

        return processed(f" WHERE {_quote(column)} = '{value}'"), processed("")



def _java17_home() -> str:
    """Spark 4.1's Hadoop fails on Java 25 (Subject.getSubject); use the machine's Java 17."""
    for candidate in Path("/usr/lib/jvm").glob("java-17-openjdk*"):
        if (candidate / "bin" / "java").exists():
            return str(candidate)
    raise RuntimeError("Spark needs Java 17: apt-get install -y openjdk-17-jdk-headless")


def _quote(column: str) -> str:
    return f'"{column}"'
