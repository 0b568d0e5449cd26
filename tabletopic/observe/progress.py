"""Progress of long command-line work (a backfill, a compaction, a replay, an audit): a rich bar
with rate and ETA when stderr is a terminal, plain `<event>` log lines every few seconds when it is
not (a pod's log, a CI run, a parallel backfill's children).

`pace` is the arithmetic, kept pure; `Progress` decides how to show it. A library loop takes an
`OnProgress` (default none), so the service and the maintenance process run it as before; the command
passes `Progress.report`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

log = structlog.get_logger()

PLAIN_EVERY_S = 5.0

# Where a long loop is: `part` (a partition, a table) is done up to `done` out of `total`.
OnProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Pace:
    done: int
    total: int
    rate: float  # units per second since the start
    eta_s: float | None  # seconds left at that rate; None while nothing is done yet

    def as_fields(self, unit: str = "records") -> dict[str, Any]:
        return {unit: self.done, "total": self.total, "rate": round(self.rate, 1),
                "eta_s": None if self.eta_s is None else round(self.eta_s)}


def pace(done: int, total: int, elapsed_s: float) -> Pace:
    """Rate and time left of `done` out of `total` after `elapsed_s` seconds."""
    done = max(0, done)
    left = max(0, total - done)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    if left == 0:
        eta: float | None = 0.0
    elif rate > 0:
        eta = left / rate
    else:
        eta = None
    return Pace(done, total, rate, eta)


class Progress:
    """Several parts (e.g. a topic's partitions), each done up to a known total; a part may also first
    appear when its loop reports it (`report`), its total known only then."""

    def __init__(self, event: str, totals: Mapping[str, int], *, unit: str = "records", plain: bool = False,
                 stream: TextIO | None = None, every_s: float = PLAIN_EVERY_S, **fields: Any) -> None:
        self.event = event  # e.g. backfill.progress
        self.totals = dict(totals)
        self.done = dict.fromkeys(self.totals, 0)
        self.unit = unit  # also the key of the count on a plain line
        self.fields = fields  # also on every plain line, e.g. table=...
        self.every_s = every_s
        self.started = time.monotonic()
        self._shown = self.started
        stream = sys.stderr if stream is None else stream
        self.draws = not plain and stream.isatty()  # else it logs
        self._bar = _RichBar(self.totals, unit, stream) if self.draws else None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def advance(self, part: str, done: int) -> None:
        """`part` is now done up to `done` (not a step: the position)."""
        self.done[part] = done
        if self._bar is not None:
            self._bar.update(part, done)

    def report(self, part: str, done: int, total: int) -> None:
        """An `OnProgress`: `part` is done up to `done` of `total` (a new part, or a total learnt late)."""
        if self.totals.get(part) != total:
            self.totals[part] = total
            self.done.setdefault(part, 0)
            if self._bar is not None:
                self._bar.set_total(part, total)
        self.advance(part, done)
        self.show()

    def step(self, part: str, by: int = 1) -> None:
        self.advance(part, self.done[part] + by)

    def overall(self, now: float | None = None) -> Pace:
        elapsed = (time.monotonic() if now is None else now) - self.started
        return pace(sum(self.done.values()), sum(self.totals.values()), elapsed)

    def show(self, final: bool = False) -> None:
        """A plain line, at most every `every_s` (the bar draws itself)."""
        if self.draws or not self.totals:  # nothing to do: nothing to say
            return
        now = time.monotonic()
        if not final and now - self._shown < self.every_s:
            return
        self._shown = now
        parts = {}
        if len(self.totals) > 1:
            parts = {"parts": {name: {"done": self.done[name], "of": total} for name, total in self.totals.items()}}
        log.info(self.event, **self.fields, **self.overall(now).as_fields(self.unit), final=final, **parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _RichBar:
    def __init__(self, totals: Mapping[str, int], unit: str, stream: TextIO) -> None:
        self._bars = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
            _PaceColumn(), console=Console(file=stream), transient=False)
        self._tasks = {name: self._bars.add_task(name, total=total) for name, total in totals.items()}
        self._bars.start()

    def set_total(self, part: str, total: int) -> None:
        if part in self._tasks:
            self._bars.update(self._tasks[part], total=total)
        else:
            self._tasks[part] = self._bars.add_task(part, total=total)

    def update(self, part: str, done: int) -> None:
        self._bars.update(self._tasks[part], completed=done)

    def close(self) -> None:
        self._bars.stop()


class _PaceColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        measured = pace(int(task.completed), int(task.total or 0), task.elapsed or 0.0)
        eta = "-" if measured.eta_s is None else duration_text(measured.eta_s)
        return Text(f"{measured.rate:,.0f}/s  ETA {eta}")


def duration_text(seconds: float) -> str:
    """H:MM:SS, or M:SS below an hour."""
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@contextmanager
def progress(event: str, totals: Mapping[str, int], **kwargs: Any) -> Iterator[Progress]:
    with Progress(event, totals, **kwargs) as shown:
        yield shown
        shown.show(final=True)
