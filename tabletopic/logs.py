"""structlog set-up: JSON lines when not on a terminal, readable lines when on one.

Secrets (config.secret_values) and credentials inside URLs are masked in every field of every line,
exceptions included (the rules: secrets.py).
Standard `logging` (pyiceberg, botocore, urllib3, ...) and `warnings` go through the same
processors, masking and renderer, via a handler on the root logger.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from tabletopic.secrets import MASK, Masker

__all__ = ["MASK", "SecretMask", "configure", "mask_also", "masked"]


class SecretMask:
    """A structlog processor: every known secret, and every credential inside a URL (secrets.py's rules),
    masked wherever it appears in a value."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.masker = Masker(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self.masker.add(secrets)

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            event[key] = self.masker.value(value)
        return event


# Secrets learnt after the configuration (a named catalog's, from pyiceberg's own file), and the mask in use.
_learnt: set[str] = set()
_mask = SecretMask(())


def mask_also(secrets: Iterable[str]) -> None:
    """Mask these too, from now on (and in any later configuration)."""
    new = {s for s in secrets if s}
    _learnt.update(new)
    _mask.add(new)


def masked(text: str) -> str:
    """`text` with every known secret and URL credential masked, for what leaves the process other than
    by the logs (an error printed on stderr)."""
    return _mask.masker.text(text)


class _CurrentStderr:
    """What structlog prints to: the sys.stderr of the moment, not the one at `configure` (a redirect made
    later, or a capture since closed, would otherwise swallow lines or fail every later log call)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _RootHandler(logging.StreamHandler):
    """The one handler tabletopic puts on the root logger (replaced when configure runs again); it writes
    to the sys.stderr of the moment, as print does."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str = "info", json_output: bool | None = None, secrets: Iterable[str] = ()) -> None:
    if json_output is None:
        json_output = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    global _mask
    mask = _mask = SecretMask([*secrets, *_learnt])
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            mask,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]  # write, flush
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            stamp,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask,
            renderer,
        ],
    )
    handler = _RootHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RootHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.captureWarnings(True)  # warnings.warn(...) of libraries: through the same handler
