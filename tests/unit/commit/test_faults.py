"""Retryability is typed: refused credentials, a missing bucket and a catalog's 401/403 are permanent
(the table halts), outages are transient (retried); the committer raises PermanentFault at once."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy.exc
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from pyiceberg.exceptions import (
    ForbiddenError,
    NoSuchTableError,
    ServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)

from tabletopic.commit import faults
from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.committer import Committer
from tabletopic.core.backoff import RetryPolicy
from tabletopic.exceptions import CommitError, PermanentFault


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")


def raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` as `raise outer from inner` leaves it (s3fs and pyiceberg wrap this way)."""
    try:
        raise outer from inner
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(("error", "reason"), [
    (client_error("AccessDenied", 403), "access_denied"),
    (client_error("NoSuchBucket", 404), "no_such_bucket"),
    (client_error("InvalidAccessKeyId", 403), "invalid_credentials"),
    (client_error("SignatureDoesNotMatch", 403), "invalid_credentials"),
    (client_error("SomethingNew", 403), "access_denied"),
    # s3fs: an OSError raised from the ClientError
    (raised_from(FileNotFoundError("The specified bucket does not exist"), client_error("NoSuchBucket", 404)),
     "no_such_bucket"),
    (raised_from(PermissionError("Access Denied"), client_error("AccessDenied", 403)), "access_denied"),
    # pyarrow's S3 filesystem, and pyiceberg's PermissionError over it
    (OSError("When creating key 'x' in bucket 'nope': AWS Error NO_SUCH_BUCKET during PutObject operation: "
             "The specified bucket does not exist"), "no_such_bucket"),
    (raised_from(PermissionError("Cannot create file, access denied: s3://b/x"),
                 OSError("AWS Error [code 15] during PutObject operation")), "access_denied"),
    (OSError("AWS Error INVALID_ACCESS_KEY_ID during PutObject operation: bad key"), "invalid_credentials"),
    (PermissionError(13, "Permission denied", "/warehouse/t/data"), "access_denied"),
    (ForbiddenError("Forbidden: principal may not write ns.t"), "catalog_forbidden"),
    (UnauthorizedError("Not authorized"), "catalog_unauthorized"),
    (NoSuchTableError("Table does not exist: ns.t"), "no_such_table"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "read_only"),
])
def test_permanent_faults_name_their_reason_and_fix(error: BaseException, reason: str) -> None:
    fault = faults.permanent(error)
    assert fault is not None and fault.reason == reason
    assert fault.fix == faults.FIXES[reason]
    assert not faults.is_transient(error)


@pytest.mark.parametrize("error", [
    client_error("SlowDown", 503),
    client_error("InternalError", 500),
    client_error("ExpiredToken", 400),  # the credential chain renews it
    client_error("RequestTimeTooSkewed", 403),  # botocore corrects the clock
    raised_from(OSError("S3 error"), client_error("ServiceUnavailable", 503)),
    EndpointConnectionError(endpoint_url="http://s3"),
    ReadTimeoutError(endpoint_url="http://s3"),
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError("timed out"),
    OSError("AWS Error NETWORK_CONNECTION during PutObject operation: curl error"),
    ServiceUnavailableError("503"), ServerError("500"), TooManyRequestsError("429"),
    sqlite3.OperationalError("database is locked"),
    sqlalchemy.exc.OperationalError("UPDATE iceberg_tables", {}, sqlite3.OperationalError("database is locked")),
])
def test_outages_are_transient(error: BaseException) -> None:
    assert faults.permanent(error) is None
    assert faults.is_transient(error)


def test_a_bug_is_neither() -> None:
    assert faults.permanent(ValueError("x")) is None
    assert not faults.is_transient(ValueError("x"))


class RefusingCatalog:
    """A catalog whose every load fails with `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.loads = 0

    def load_table(self, _identifier: str) -> Any:
        self.loads += 1
        raise self.error


def one_partition() -> dict[tuple[str, int], PartitionBuffer]:
    import pyarrow as pa

    rows = pa.table({"n": [1]})
    return {("t", 0): PartitionBuffer(0, 0, [rows], rows.nbytes)}


def test_the_committer_halts_at_once_on_a_permanent_fault() -> None:
    sleeps: list[float] = []
    catalog = RefusingCatalog(client_error("AccessDenied", 403))
    committer = Committer(catalog, "ns.t", "g", "w", RetryPolicy(deadline_s=5.0), sleep=sleeps.append)  # type: ignore[arg-type]
    with pytest.raises(PermanentFault) as caught:
        committer.commit(one_partition())
    assert (caught.value.table, caught.value.reason) == ("ns.t", "access_denied")
    assert isinstance(caught.value, CommitError)  # the sink puts its rows back as for any failed commit
    assert catalog.loads == 1 and sleeps == []


def test_the_committer_still_retries_an_outage() -> None:
    sleeps: list[float] = []
    catalog = RefusingCatalog(client_error("SlowDown", 503))
    committer = Committer(catalog, "ns.t", "g", "w", RetryPolicy(deadline_s=0.0), sleep=sleeps.append)  # type: ignore[arg-type]
    with pytest.raises(CommitError) as caught:
        committer.commit(one_partition())
    assert not isinstance(caught.value, PermanentFault)
