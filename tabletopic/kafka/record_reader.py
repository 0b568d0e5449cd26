"""Read a range of one partition's records whole (key, value, timestamp, headers): for `audit --values`.

Written apart from the writer's consumer on purpose: the audit must not share the code it checks
(it shares only the settings of a range reader with the offset audit and backfill).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tabletopic.core.records import RecordChunk
from tabletopic.kafka.reader import range_consumer

# Records handed back per chunk: bounds the audit's memory, whatever the partition's size.
CHUNK_RECORDS = 10_000
POLL_TIMEOUT_S = 1.0


def read_partition(
    settings: Mapping[str, str], topic: str, partition: int, start: int, end: int, chunk_records: int = CHUNK_RECORDS
) -> Iterator[RecordChunk]:
    """The records of `topic`/`partition` with offsets in `start..end-1`, in chunks, in offset order.

    `end` must not pass the log end; the read also ends at the log end (transaction markers or
    compaction can leave the last offsets of the range without a record)."""
    if end <= start:
        return
    consumer = range_consumer(settings, "audit-values")
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        chunk = RecordChunk(topic, partition)
        position = start
        while True:
            done = False
            # Ask for no more than the range still holds: consume() waits its whole timeout for a
            # count it cannot fill, and the last call of every range would.
            wanted = max(1, min(chunk_records - len(chunk), end - position))
            for message in consumer.consume(num_messages=wanted, timeout=POLL_TIMEOUT_S):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done = True
                        break
                    raise KafkaException(error)
                offset = typing.cast(int, message.offset())
                if offset >= end:
                    done = True
                    break
                timestamp = message.timestamp()[1]
                chunk.offsets.append(offset)
                chunk.keys.append(message.key())
                chunk.values.append(message.value())
                chunk.timestamps_ms.append(None if timestamp < 0 else timestamp)
                chunk.headers.append(typing.cast(list[tuple[str, bytes | None]] | None, message.headers()))
                position = offset + 1
                if position >= end:
                    done = True
                    break
            if len(chunk) >= chunk_records or (done and len(chunk)):
                yield chunk
                chunk = RecordChunk(topic, partition)
            if done:
                return
    finally:
        consumer.close()
