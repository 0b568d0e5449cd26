"""What every layer shares: record chunks, the `_kafka_*` columns, dead-letter reason codes,
partition terms, exit codes, the backoff policy. Imports nothing else of tabletopic."""
