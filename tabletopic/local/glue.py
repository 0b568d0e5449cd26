"""AWS Glue's API as moto's server answers it: the one process of a `LocalS3` serves Glue beside S3 on the
same port, so a Glue catalog and its warehouse live in one process.

The settings here point pyiceberg, Spark (Iceberg's GlueCatalog) and Trino (its Glue metastore) at that
server. moto's Glue accepts `UpdateTable` with a stale `VersionId` (AWS refuses it with
ConcurrentModificationException): a lost-update race between two writers is not refused by this double.
"""

from __future__ import annotations

from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3


def catalog_properties(server: LocalS3, bucket: str) -> dict[str, str]:
    """pyiceberg's Glue catalog at `server`, tables under s3://`bucket` on the same server."""
    return {
        "type": "glue",
        "glue.endpoint": server.endpoint,
        "glue.region": REGION,
        "glue.access-key-id": ACCESS_KEY,
        "glue.secret-access-key": SECRET_KEY,
        "warehouse": f"s3://{bucket}",
        **server.catalog_properties(),
    }


def credentials_environment() -> dict[str, str]:
    """Iceberg's GlueCatalog takes its Glue client's credentials from the AWS SDK's default chain only."""
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}


def spark_conf(server: LocalS3, bucket: str, name: str = "glue") -> dict[str, str]:
    """Spark's `spark.sql.catalog.<name>.*` for Iceberg's GlueCatalog with S3FileIO, both at `server`."""
    prefix = f"spark.sql.catalog.{name}"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "glue",
        f"{prefix}.glue.endpoint": server.endpoint,
        f"{prefix}.client.region": REGION,
        f"{prefix}.warehouse": f"s3://{bucket}",
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.s3.endpoint": server.endpoint,
        f"{prefix}.s3.path-style-access": "true",
        f"{prefix}.s3.access-key-id": ACCESS_KEY,
        f"{prefix}.s3.secret-access-key": SECRET_KEY,
    }


def trino_catalog(server: LocalS3) -> dict[str, str]:
    """Trino's Iceberg connector on its Glue metastore at `server`, files through its native S3 client."""
    return {
        "iceberg.catalog.type": "glue",
        "hive.metastore.glue.region": REGION,
        "hive.metastore.glue.endpoint-url": server.endpoint,
        "hive.metastore.glue.aws-access-key": ACCESS_KEY,
        "hive.metastore.glue.aws-secret-key": SECRET_KEY,
        "fs.native-s3.enabled": "true",
        "s3.endpoint": server.endpoint,
        "s3.region": REGION,
        "s3.path-style-access": "true",
        "s3.aws-access-key": ACCESS_KEY,
        "s3.aws-secret-key": SECRET_KEY,
    }
