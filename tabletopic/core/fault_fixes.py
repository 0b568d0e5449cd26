"""What an operator does about each permanent fault (commit/faults.py tells them apart): kept apart from
the classification, which needs pyiceberg's errors, so that a pool's supervisor can say it without loading them."""

from __future__ import annotations

FIXES = {
    "access_denied": "the object store refuses these credentials: grant them read, write, list and delete on the "
                     "warehouse and the table's locations (s3:GetObject, s3:PutObject, s3:ListBucket, "
                     "s3:DeleteObject), or give the catalog credentials that have them",
    "no_such_bucket": "the bucket of the table's location does not exist: create it, or point the warehouse (or "
                      "the table's write.data.path) at one that does",
    "invalid_credentials": "the object store does not know these credentials: check s3.access-key-id and "
                           "s3.secret-access-key (or the variables and files they name)",
    "catalog_unauthorized": "the catalog does not accept these credentials (401): check catalog.credential or "
                            "catalog.token (or the variables and files they name)",
    "catalog_forbidden": "the catalog denies this principal the table (403): grant it the table and its namespace",
    "catalog_bad_request": "the catalog refused the request as malformed (400): see the error; the catalog and "
                           "this version of tabletopic may not agree",
    "no_such_table": "the table was dropped or renamed while the writer ran: restart the writer to create it "
                     "again (the offsets start over), or restore the table",
    "no_such_namespace": "the table's namespace was dropped while the writer ran: restart the writer to create it "
                         "again, or restore it",
    "read_only": "the catalog database or the warehouse is read-only to this process: give it write access",
}
