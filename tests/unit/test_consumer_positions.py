"""`GroupConsumer.consumed_to` trusts librdkafka's position only for partitions that handed over a record
since their assignment, their last seek and their last error: a stale position would let the service claim
offsets of records it dropped (tabletopic/service.py `_pass_over_empty_offsets`)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from tabletopic.kafka.consumer import GroupConsumer


class _Message:
    def __init__(self, offset: int, error: KafkaError | None = None, partition: int = 0) -> None:
        self._offset, self._error, self._partition = offset, error, partition

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return b"{}"

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def headers(self) -> None:
        return None


class _Librdkafka:
    """Stands in for confluent_kafka.Consumer: its position is whatever the test says, stale or not."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.stale_position = 0

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        return self.batches.pop(0) if self.batches else []

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, self.stale_position) for p in partitions]

    def seek(self, partition: TopicPartition) -> None:
        pass

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        pass

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        pass


def _consumer() -> tuple[GroupConsumer, _Librdkafka]:
    consumer = GroupConsumer({"bootstrap.servers": "127.0.0.1:1"}, "g")
    consumer._consumer.close()
    fake = _Librdkafka()
    consumer._consumer = fake  # type: ignore[assignment]
    consumer.assigned.add(("t", 0))
    return consumer, fake


def test_no_position_before_a_record_was_handed_over():
    consumer, fake = _consumer()
    fake.stale_position = 50
    assert consumer.consumed_to([("t", 0)]) == {}
    fake.batches.append([_Message(10), _Message(11)])
    consumer.poll(100, 0.1)
    assert consumer.consumed_to([("t", 0)]) == {("t", 0): 50}


def test_a_seek_a_reposition_or_an_assignment_afresh_forget_the_position_until_the_next_record():
    for forget in (lambda c: c.seek(("t", 0), 5), lambda c: c.reposition(("t", 0), 5),
                   lambda c: c._assign_afresh(("t", 0), 5)):
        consumer, fake = _consumer()
        fake.batches.append([_Message(10)])
        consumer.poll(100, 0.1)
        fake.stale_position = 11
        assert consumer.consumed_to([("t", 0)]) == {("t", 0): 11}
        forget(consumer)
        # librdkafka may still answer the old position: it must not be used
        assert consumer.consumed_to([("t", 0)]) == {}
        fake.batches.append([_Message(5)])
        consumer.poll(100, 0.1)
        fake.stale_position = 6
        assert consumer.consumed_to([("t", 0)]) == {("t", 0): 6}


def test_a_fetch_error_of_a_partition_forgets_its_position_even_beside_records():
    consumer, fake = _consumer()
    error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    fake.batches.append([_Message(10), _Message(11, error)])
    consumer.poll(100, 0.1)
    fake.stale_position = 12  # an old librdkafka moved it past the record it never handed over
    assert consumer.consumed_to([("t", 0)]) == {}
