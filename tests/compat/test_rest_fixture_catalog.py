"""The compatibility matrix's column for Iceberg's REST catalog test fixture (the session's `rest_catalog`,
a SQLite-backed `RESTCatalogServer` over moto S3): two writers racing on one table. Its other cells are the
integration and engines suites (docs/compatibility.md)."""

from __future__ import annotations

import pytest

from tabletopic.local.rest_catalog import LocalRestCatalog
from tests.compat import harness
from tests.compat.harness import LakeUnderTest, stopped


@pytest.fixture(scope="module")
def lake(rest_catalog: LocalRestCatalog) -> LakeUnderTest:
    assert rest_catalog.process is not None
    pid = rest_catalog.process.pid
    return LakeUnderTest("restfixture", {"name": "lake", **rest_catalog.client_properties()},
                         pause=lambda: stopped(pid))


def test_two_writers_race(lake, kafka, new_topic, spawn_writer, tmp_path):
    harness.writers_race(lake, kafka, new_topic, spawn_writer, tmp_path)
