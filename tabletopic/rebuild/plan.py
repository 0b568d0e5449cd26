"""The pure decisions of a rebuild: table names, the renames of a swap, when the rebuild has caught up,
and the estimated time to catch up."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from tabletopic.catalog.projection import PREVIOUS_SUFFIX, REBUILD_SUFFIX, SWAP_SUFFIX
from tabletopic.commit.offsets import OffsetMap, TopicPartition

DLQ_SUFFIX = "__dlq"


def rebuild_name(table: str) -> str:
    return table + REBUILD_SUFFIX


def previous_name(table: str) -> str:
    return table + PREVIOUS_SUFFIX


def dlq_name(table: str) -> str:
    return table + DLQ_SUFFIX


@dataclass(frozen=True)
class Move:
    """Rename the table whose uuid is `uuid` from `source` to `target`."""

    source: str
    target: str
    uuid: str


@dataclass(frozen=True)
class Journal:
    """A swap in progress, recorded on the incoming table before its first rename: a rerun completes it."""

    cutover: str  # the id the freezes carry
    moves: tuple[Move, ...]
    frozen_at: dict[str, int]  # the outgoing table's offsets when it was frozen ("topic/partition" -> next)
    done: bool = False

    def encode(self) -> str:
        return json.dumps({"cutover": self.cutover, "done": self.done, "frozen_at": self.frozen_at,
                           "moves": [[m.source, m.target, m.uuid] for m in self.moves]}, sort_keys=True)

    @staticmethod
    def decode(text: str) -> Journal:
        data = json.loads(text)
        return Journal(str(data["cutover"]), tuple(Move(*m) for m in data["moves"]),
                       {str(k): int(v) for k, v in data["frozen_at"].items()}, bool(data["done"]))


def swap_moves(table: str, incoming: str, outgoing_to: str, uuids: Mapping[str, str]) -> tuple[Move, ...]:
    """The renames that put `incoming` at `table` and the table there now at `outgoing_to`, data tables
    first, then their dead-letter tables (`uuids`: name -> uuid of each table that exists now).

    When `outgoing_to` is `incoming` (a rollback: the tables trade places), the outgoing one is parked
    under a third name first. Between the first two renames `table` does not exist: a reader meets
    "no such table", never a mix of the two versions."""
    parking = table + SWAP_SUFFIX if outgoing_to == incoming else outgoing_to
    moves: list[Move] = []
    for suffix in ("", DLQ_SUFFIX):
        here, there = uuids.get(table + suffix), uuids.get(incoming + suffix)
        if here is not None:
            moves.append(Move(table + suffix, parking + suffix, here))
        if there is not None:
            moves.append(Move(incoming + suffix, table + suffix, there))
        if here is not None and parking != outgoing_to:
            moves.append(Move(parking + suffix, outgoing_to + suffix, here))
    return tuple(moves)


def caught_up(read_to: Mapping[TopicPartition, int], live: Mapping[TopicPartition, int]) -> bool:
    """Whether the rebuild has read every partition at least as far as the live table holds it. Pure."""
    return all(read_to.get(tp, -1) >= n for tp, n in live.items())


def behind(read_to: Mapping[TopicPartition, int], live: Mapping[TopicPartition, int]) -> int:
    """Records (offsets) the rebuild still has to read to reach the live table."""
    return sum(max(0, n - read_to.get(tp, 0)) for tp, n in live.items())


def eta_seconds(behind_now: int, behind_before: int, seconds: float) -> float | None:
    """The time to catch up at the rate the gap closed over the last `seconds`; None while it does not close."""
    closing = (behind_before - behind_now) / seconds if seconds > 0 else 0.0
    if behind_now == 0:
        return 0.0
    return behind_now / closing if closing > 0 else None


def offsets_text(offsets: OffsetMap) -> dict[str, int]:
    return {f"{t}/{p}": n for (t, p), n in sorted(offsets.items())}


def offsets_from_text(text: Mapping[str, int]) -> OffsetMap:
    found: OffsetMap = {}
    for key, n in text.items():
        topic, _, partition = key.rpartition("/")
        found[(topic, int(partition))] = n
    return found
