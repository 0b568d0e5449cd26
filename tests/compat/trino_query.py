"""Trino reads through each catalog of the compatibility matrix: one server (the session's `trino_server`),
a catalog added at run time per catalog under test."""

from __future__ import annotations

from typing import Any

from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tabletopic.local.trino import LocalTrino


def s3_properties(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                  region: str = REGION) -> dict[str, str]:
    """Trino's native S3 file system at a loopback S3 server."""
    return {"fs.native-s3.enabled": "true", "s3.endpoint": endpoint, "s3.path-style-access": "true",
            "s3.region": region, "s3.aws-access-key": access_key, "s3.aws-secret-key": secret_key}


def trino_sql(server: LocalTrino, sql: str) -> list[list[Any]]:
    from trino.dbapi import connect

    connection = connect(host="127.0.0.1", port=server.port, user="tests")
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return [list(row) for row in cursor.fetchall()]
    finally:
        connection.close()


def add_catalog(server: LocalTrino, name: str, properties: dict[str, str]) -> None:
    """CREATE CATALOG `name` USING iceberg WITH (...); a catalog of that name already there is kept."""
    if [name] in trino_sql(server, "SHOW CATALOGS"):
        return
    settings = ", ".join(f'"{key}" = \'{value}\'' for key, value in properties.items())
    trino_sql(server, f"CREATE CATALOG {name} USING iceberg WITH ({settings})")
