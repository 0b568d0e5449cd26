"""Defaults of per-record limits that both the config and the decoders need."""

from __future__ import annotations

DEFAULT_MAX_ITEMS = 100_000  # array items and map entries in one record, all of its arrays and maps together
