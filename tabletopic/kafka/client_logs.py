"""librdkafka's own log lines through structlog: masked like every other line, and whole (librdkafka's
threads writing to stderr directly can land in the middle of a JSON line)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import structlog

log = structlog.get_logger("librdkafka")


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning" if record.levelno >= logging.WARNING \
            else "info" if record.levelno >= logging.INFO else "debug"
        getattr(log, level)("kafka.log", message=record.getMessage())


def _logger() -> logging.Logger:
    logger = logging.getLogger("tabletopic.librdkafka")
    if not logger.handlers:
        logger.addHandler(_ToStructlog())
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


def with_logger(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Client settings whose log lines go to structlog (delivered when the client is polled)."""
    return {**settings, "logger": _logger()}
