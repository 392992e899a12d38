"""Per-partition offset order for the session agent: every record once, in order, or not yet.

faust-streaming 0.15.3 can drop a run of prefetched records right after a worker starts (its
recovery seeks while the fetcher already holds records; seen as a jump in offsets, sometimes
followed by re-delivered ones). Session state is a fold, so a skipped event would be lost for good.
:class:`OffsetGuard` lets through only the next offset of each partition it has seen, drops
re-deliveries, and asks for a seek back to the first missing offset when it sees a gap.
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence, TypeVar

T = TypeVar("T")


class OffsetGuard:
    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}

    def admit(self, records: Sequence[tuple[Hashable, int, T]]) -> tuple[list[T], dict[Hashable, int]]:
        """(partition, offset, item) in arrival order -> (items to process, partition -> offset to seek back to)."""
        keep: list[T] = []
        rewind: dict[Hashable, int] = {}
        for tp, offset, item in records:
            if tp in rewind:
                continue
            expected = self._next.get(tp)
            if expected is not None and offset < expected:
                continue  # delivered again: already processed
            if expected is not None and offset > expected:
                rewind[tp] = expected  # records were skipped: read them again, then this one
                continue
            keep.append(item)
            self._next[tp] = offset + 1
        return keep, rewind

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Partitions revoked or newly assigned: their next offset is the committed one, not ours."""
        for tp in partitions:
            self._next.pop(tp, None)
