"""A producer of records copied elsewhere (the dead-letter topic): confluent_kafka's Producer
behind produce / poll / flush, its errors as plain values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import Producer as _Producer

from tabletopic.kafka.client_logs import with_logger

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class DeliveryError:
    name: str  # librdkafka's name of the error, e.g. MSG_SIZE_TOO_LARGE
    text: str
    too_large: bool  # the broker refused the record for its size


class ProduceRefused(Exception):
    """The client refused to queue the record (not a full queue: that is BufferError)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text


def _delivery_error(error: KafkaError | None) -> DeliveryError | None:
    if error is None:
        return None
    return DeliveryError(error.name(), error.str(), error.code() == KafkaError.MSG_SIZE_TOO_LARGE)


class Producer:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        self._producer = _Producer(with_logger(dict(settings)))

    def produce(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                on_delivery: Callable[[DeliveryError | None], None]) -> None:
        """Queue one record; `on_delivery` hears of it from a later poll or flush. Raises BufferError
        when the producer's queue is full, ProduceRefused when the client refuses the record."""

        def delivered(error: KafkaError | None, _message: Message) -> None:
            on_delivery(_delivery_error(error))

        try:
            self._producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            raise ProduceRefused(error.name() if error else "produce_error",
                                 error.str() if error else str(exc)) from exc

    def poll(self, timeout_s: float) -> None:
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait for the deliveries; the number of records still queued after `timeout_s`."""
        return int(self._producer.flush(timeout_s))
