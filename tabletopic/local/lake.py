"""`python -m tabletopic.local.lake`: an S3 server and a REST catalog on loopback, to try engines against.

Prints the `catalog:` section for tabletopic and the settings for Spark, Trino and DuckDB, then
runs until Ctrl-C.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import yaml

from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3


def describe(rest: LocalRestCatalog) -> str:
    s3 = rest.s3.endpoint
    return f"""\
tabletopic config (catalog section):
{yaml.safe_dump({"catalog": {"name": "lake", **rest.client_properties()}}, sort_keys=False)}
Spark (pyspark, with iceberg-spark-runtime and iceberg-aws-bundle jars):
  spark.sql.catalog.lake=org.apache.iceberg.spark.SparkCatalog
  spark.sql.catalog.lake.type=rest
  spark.sql.catalog.lake.uri={rest.uri}
  spark.sql.catalog.lake.io-impl=org.apache.iceberg.aws.s3.S3FileIO
  spark.sql.catalog.lake.s3.endpoint={s3}
  spark.sql.catalog.lake.s3.path-style-access=true
  spark.sql.catalog.lake.s3.access-key-id={ACCESS_KEY}
  spark.sql.catalog.lake.s3.secret-access-key={SECRET_KEY}
  spark.sql.catalog.lake.client.region={REGION}

Trino (etc/catalog/lake.properties):
  connector.name=iceberg
  iceberg.catalog.type=rest
  iceberg.rest-catalog.uri={rest.uri}
  fs.native-s3.enabled=true
  s3.endpoint={s3}
  s3.path-style-access=true
  s3.region={REGION}
  s3.aws-access-key={ACCESS_KEY}
  s3.aws-secret-key={SECRET_KEY}

DuckDB:
  CREATE SECRET (TYPE s3, KEY_ID '{ACCESS_KEY}', SECRET '{SECRET_KEY}', REGION '{REGION}',
                 ENDPOINT '{s3.removeprefix("http://")}', URL_STYLE 'path', USE_SSL false);
  ATTACH 'warehouse' AS lake (TYPE iceberg, ENDPOINT '{rest.uri}', AUTHORIZATION_TYPE 'none');
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tabletopic-lake-") as work:
        s3 = LocalS3(Path(work) / "s3").start()
        rest = LocalRestCatalog(Path(work) / "rest", s3).start()
        try:
            print(describe(rest), flush=True)
            print("running; Ctrl-C stops both servers", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            rest.stop()
            s3.stop()


if __name__ == "__main__":
    main()
