"""Broker checks through an admin client (the /readyz broker probe)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def topic_lister(kafka: Mapping[str, str], timeout_s: float) -> Callable[[], None]:
    """A check that lists the broker's topics, raising when the broker does not answer in `timeout_s`."""
    from confluent_kafka.admin import AdminClient

    # librdkafka says what it cannot reach on its own log; the probe's answer is the reason.
    settings: dict[str, Any] = {**kafka, "log_level": 0, "error_cb": lambda _error: None}
    admin = AdminClient(settings)

    def check() -> None:
        admin.list_topics(timeout=timeout_s)

    return check
