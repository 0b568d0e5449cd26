"""The broker client's error type, for callers outside kafka/ that catch it (the service's offset
and topic-id look-ups): only kafka/ imports confluent_kafka."""

from __future__ import annotations

from confluent_kafka import KafkaException as KafkaException
