"""Hive Metastore's thrift client errors (pyiceberg's Hive catalog) as tabletopic judges them."""

from __future__ import annotations

from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from tabletopic.commit.faults import is_transient, permanent


def test_a_metastore_that_does_not_answer_is_an_outage() -> None:
    refused = TTransportException(TTransportException.NOT_OPEN, "Could not connect to any of [('127.0.0.1', 9083)]")
    closed = TTransportException(TTransportException.END_OF_FILE, "TSocket read 0 bytes")
    assert is_transient(refused) and permanent(refused) is None
    assert is_transient(closed)


def test_a_call_the_metastore_does_not_know_is_not_an_outage() -> None:
    # Hive 4 answers pyiceberg 0.12's `get_table` so: no retry makes it known.
    assert not is_transient(TApplicationException(TApplicationException.UNKNOWN_METHOD, "Invalid method name"))
