"""One table's way from records to snapshots (TableSink, table_sink.py), along its jobs:

- intake.py: a chunk → rows for its good records and the bad ones with their reasons (rows.py: the
  pure part; table_shape.py: the table's schema and decoder, its creation and evolution);
- error_policy.py: what `errors: dlq | fail | skip` does with the bad ones (pure);
- writer.py: the buffers and the two committers, the table's and its dead-letter table's.
"""

from tabletopic.sink.table_sink import TableSink

__all__ = ["TableSink"]
