"""Which errors of catalogs and object stores a later attempt may not meet, and which no retry fixes.

Transient: lost connections, timeouts, 5xx answers, throttling, a locked SQLite catalog.
Permanent: refused credentials, a missing bucket, a 401/403 from the catalog, a table or
namespace that is gone. A permanent fault halts its table with the reason and the fix, instead
of being retried as if it were an outage.

Judged on types and on the codes the services send (S3's `Error.Code` in a botocore ClientError,
the HTTP status), for the exception and everything it was raised from (`__cause__`,
`__context__`): pyiceberg and s3fs wrap a service's error in an OSError. pyarrow's S3 errors are
plain OSErrors whose only trace of the code is its text ("AWS Error ACCESS_DENIED ...").
"""

from __future__ import annotations

import errno
import functools
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyiceberg import exceptions as iceberg

from tabletopic.core.fault_fixes import FIXES


@dataclass(frozen=True)
class Permanent:
    reason: str  # a short code, the same for every occurrence: a metric label, /readyz
    fix: str


# S3 error codes (`Error.Code`) that no retry fixes.
_PERMANENT_S3_CODES = {
    "AccessDenied": "access_denied",
    "AllAccessDisabled": "access_denied",
    "AccountProblem": "access_denied",
    "InvalidObjectState": "access_denied",
    "NoSuchBucket": "no_such_bucket",
    "InvalidBucketName": "no_such_bucket",
    "InvalidAccessKeyId": "invalid_credentials",
    "SignatureDoesNotMatch": "invalid_credentials",
    "InvalidClientTokenId": "invalid_credentials",
    "UnrecognizedClientException": "invalid_credentials",
    "InvalidToken": "invalid_credentials",
}
# Codes sent with a 4xx status that a later attempt may not meet: throttling, a clock corrected by
# botocore, a session token renewed by the credential chain (IRSA, instance roles).
_TRANSIENT_S3_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
    "RequestTimeout", "RequestTimeTooSkewed", "ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired",
}
# pyarrow's S3 filesystem names the AWS SDK's error type, or its number for older versions of it.
_PYARROW_S3_ERRORS = [
    (re.compile(r"AWS Error (ACCESS_DENIED|\[code 15\])"), "access_denied"),
    (re.compile(r"AWS Error NO_SUCH_BUCKET"), "no_such_bucket"),
    (re.compile(r"AWS Error (INVALID_ACCESS_KEY_ID|SIGNATURE_DOES_NOT_MATCH|INVALID_SIGNATURE|INVALID_CLIENT_TOKEN_ID"
                r"|UNRECOGNIZED_CLIENT|\[code (3|17|21|22|23)\])"), "invalid_credentials"),
]
_PERMANENT_CATALOG_ERRORS: list[tuple[type[BaseException], str]] = [
    (iceberg.ForbiddenError, "catalog_forbidden"),
    (iceberg.UnauthorizedError, "catalog_unauthorized"),
    (iceberg.OAuthError, "catalog_unauthorized"),
    (iceberg.BadRequestError, "catalog_bad_request"),
    (iceberg.NoSuchTableError, "no_such_table"),
    (iceberg.NoSuchNamespaceError, "no_such_namespace"),
]
_TRANSIENT_CATALOG_ERRORS = (
    iceberg.ServiceUnavailableError, iceberg.ServerError, iceberg.TooManyRequestsError,
    iceberg.AuthorizationExpiredError,  # the token is renewed on the next attempt
)
_READ_ONLY_DATABASE = re.compile(r"readonly database|read-only database", re.IGNORECASE)


def permanent(exc: BaseException) -> Permanent | None:
    """The reason no retry can fix `exc`, or None when it is not known to be permanent."""
    for link in _chain(exc):
        reason = _permanent_reason(link)
        if reason is not None:
            return Permanent(reason, FIXES[reason])
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a later attempt may not meet `exc` (an outage of the catalog or the object store)."""
    return permanent(exc) is None and any(_is_transient_one(link) for link in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _permanent_reason(exc: BaseException) -> str | None:
    response = _client_error_response(exc)
    if response is not None:
        code, status = response
        if code in _PERMANENT_S3_CODES:
            return _PERMANENT_S3_CODES[code]
        if code in _TRANSIENT_S3_CODES:
            return None
        return {401: "invalid_credentials", 403: "access_denied"}.get(status or 0)
    for kind, reason in _PERMANENT_CATALOG_ERRORS:
        if isinstance(exc, kind):
            return reason
    if isinstance(exc, OSError):
        text = str(exc)
        for pattern, reason in _PYARROW_S3_ERRORS:
            if pattern.search(text):
                return reason
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
            return "access_denied"
        if exc.errno == errno.EROFS:
            return "read_only"
    database_errors = _types("sqlalchemy.exc", "OperationalError") + _types("sqlite3", "OperationalError")
    if isinstance(exc, database_errors) and _READ_ONLY_DATABASE.search(str(exc)):
        return "read_only"
    return None


def _is_transient_one(exc: BaseException) -> bool:
    response = _client_error_response(exc)
    if response is not None:
        code, status = response
        return code in _TRANSIENT_S3_CODES or status is None or status >= 500 or status == 429
    return isinstance(exc, (
        ConnectionError, TimeoutError, OSError,  # requests' errors are OSErrors too
        *_TRANSIENT_CATALOG_ERRORS,
        # "database is locked" (SQLite), a dropped connection (PostgreSQL)
        *_types("sqlalchemy.exc", "OperationalError"), *_types("sqlite3", "OperationalError"),
        *_types("botocore.exceptions", "BotoCoreError"),  # connection, timeout, credential refresh
        *_types("aiohttp", "ClientError"),
        # Hive Metastore's client: a connection refused, reset or closed mid-call
        *_types("thrift.transport.TTransport", "TTransportException"),
    ))


def _client_error_response(exc: BaseException) -> tuple[str, int | None] | None:
    """(Error.Code, HTTP status) of a botocore ClientError, else None."""
    if not isinstance(exc, _types("botocore.exceptions", "ClientError")):
        return None
    response: Any = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code", ""))
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, int(status) if status is not None else None


@functools.cache
def _types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """Exception types of an optional dependency (none if it is not installed)."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        return ()
    return tuple(getattr(found, name) for name in names if hasattr(found, name))
