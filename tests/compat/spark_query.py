"""Spark SQL in a process of its own: the engines suite holds this process's one SparkSession, and each
catalog of the compatibility matrix wants its own catalog settings and jars.

`run_spark_sql(conf, jars, sql)` starts `python -m tests.compat.spark_query` on Java 17 with the Iceberg
runtime, the AWS bundle and `jars`, runs the statements and returns the last one's rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabletopic.local import spark


def run_spark_sql(conf: dict[str, str], jars: Sequence[Path], sql: str | Sequence[str],
                  timeout_s: float = 300) -> list[list[Any]]:
    from tests.engines.engines import _java17_home

    statements = [sql] if isinstance(sql, str) else list(sql)
    request = {"conf": conf, "jars": [str(j) for j in [*spark.fetch(), *jars]], "sql": statements}
    env = {**os.environ, "JAVA_HOME": os.environ.get("JAVA_HOME") or _java17_home(), "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run([sys.executable, "-m", "tests.compat.spark_query"], input=json.dumps(request),
                            capture_output=True, text=True, timeout=timeout_s, env=env)
    if result.returncode != 0:
        raise AssertionError(f"Spark failed ({result.returncode}):\n{result.stderr[-6000:]}")
    rows: list[list[Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return rows


def _main() -> None:
    from pyspark.sql import SparkSession

    request = json.loads(sys.stdin.read())
    builder = (
        SparkSession.builder.master("local[2]").appName("tabletopic-compat")
        .config("spark.driver.memory", "1g").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2").config("spark.sql.session.timeZone", "UTC")
        .config("spark.jars", ",".join(request["jars"]))
        .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
    )
    for key, value in request["conf"].items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    try:
        rows: list[list[Any]] = []
        for statement in request["sql"]:
            rows = [list(row) for row in session.sql(statement).collect()]
        print(json.dumps(rows, default=str))
    finally:
        session.stop()


if __name__ == "__main__":
    _main()
