"""A flush that carries dead letters checks the data table first (a cutover may have frozen or replaced
it): a catalog that does not answer that check is an outage like any other commit's, the table backs off
with its rows and letters kept, never a crash. On a real SQLite catalog."""

from __future__ import annotations

import pytest
import sqlalchemy.exc

from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.exceptions import CommitError
from tabletopic.sink import TableSink
from tabletopic.sink import writer as writer_module
from tests.iceberg_fixtures import sql_catalog
from tests.unit.test_sink import chunk


@pytest.fixture
def catalog(tmp_path):
    return sql_catalog(tmp_path)


def test_a_catalog_outage_at_the_check_before_the_letters_keeps_rows_and_letters_for_the_next_flush(
        catalog, monkeypatch):
    sink = TableSink(TableConfig(table="ns.t", topic="topic"), catalog, "g", "w", RetryPolicy(deadline_s=1))
    sink.ingest(chunk([b'{"n": 0}', b"{bad", b'{"n": 2}']), now=0.0)
    assert sink.flush().committed == {("topic", 0): 3}
    sink.ingest(chunk([b'{"n": 3}', b"{bad", b'{"n": 5}'], first=3), now=1.0)
    real = writer_module.load_if_exists
    calls = []

    def locked_once(catalog_, identifier):
        if identifier == "ns.t" and not calls:
            calls.append(identifier)
            raise sqlalchemy.exc.OperationalError("load", {}, Exception("database is locked"))
        return real(catalog_, identifier)

    monkeypatch.setattr(writer_module, "load_if_exists", locked_once)
    with pytest.raises(CommitError):
        sink.flush()
    assert sink.buffer.nbytes > 0 and sink.dead_letters.nbytes > 0  # kept for the next flush
    assert sink.flush().committed == {("topic", 0): 6}
    offsets = sorted(catalog.load_table("ns.t").scan().to_arrow()["_kafka_offset"].to_pylist())
    letters = sorted(catalog.load_table(dlq_identifier("ns.t")).scan().to_arrow()["_kafka_offset"].to_pylist())
    assert offsets == [0, 2, 3, 5] and letters == [1, 4]
