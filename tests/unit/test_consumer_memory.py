"""The consumer's prefetch queue is part of a writer's memory: librdkafka holds ~2.5 times its bound
(message headers, decompressed message sets). 16 MiB took ~100 MiB of an Avro writer whose peak then
passed the buffer cap + 300 MiB; 4 MiB takes ~50 and consumes as fast (issue 22)."""

from __future__ import annotations

from tabletopic.kafka.consumer import _DEFAULTS

# One poll batch of the writer (10k records of ~190-360 B) must fit, or the consumer stalls between polls.
ONE_POLL_BATCH_KBYTES = 10_000 * 360 // 1024


def test_the_prefetch_queue_holds_one_poll_batch_and_little_more() -> None:
    kbytes = int(_DEFAULTS["queued.max.messages.kbytes"])
    assert ONE_POLL_BATCH_KBYTES <= kbytes <= 4096


def test_a_full_queue_waits_briefly_for_its_next_fetch() -> None:
    # With a small queue, librdkafka's 1 s default backoff would idle a busy consumer most of each second.
    assert int(_DEFAULTS["fetch.queue.backoff.ms"]) <= 20
