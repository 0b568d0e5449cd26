"""Jars for reading tabletopic's tables from Spark (pyspark from PyPI) through a REST catalog on S3.

`iceberg-spark-runtime-4.1_2.13` and `iceberg-aws-bundle` (for S3FileIO) from Maven Central,
fetched once into the cache and handed to Spark with `spark.jars`: nothing downloads at run time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tabletopic.local.jvm import cache_root, maven

# The newest Iceberg with a runtime for Spark 4.1 (pyspark 4.1.x); Spark needs Java 17, not 25.
ICEBERG_VERSION = "1.12.0"
SPARK_LINE = "4.1"
ARTIFACTS = [f"iceberg-spark-runtime-{SPARK_LINE}_2.13", "iceberg-aws-bundle"]


def jars() -> list[Path]:
    folder = cache_root() / f"spark-iceberg-{ICEBERG_VERSION}"
    return [folder / f"{artifact}-{ICEBERG_VERSION}.jar" for artifact in ARTIFACTS]


def fetch() -> list[Path]:
    wanted = jars()
    if all(jar.exists() for jar in wanted):
        return wanted
    folder = wanted[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for artifact in ARTIFACTS:
            maven("dependency:copy", f"-Dartifact=org.apache.iceberg:{artifact}:{ICEBERG_VERSION}",
                  f"-DoutputDirectory={work}")
        for jar in wanted:
            (Path(work) / jar.name).rename(jar)
    return wanted
