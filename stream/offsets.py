"""Per-partition read positions of the intake topics: every record handed over once, in order, or not yet.

The session state is a fold, so a skipped event would be lost for good. faust-streaming 0.15.3 can skip
records around a rebalance: a fetch in flight while its recovery seeks every partition to the committed
offset returns records from before the seek, and Faust hands them over and drops the records the seek
asked for as "read again"; it also marks an offset gap, current record included, as committable.
:class:`ReadPositions` keeps, per partition, the next offset to hand over, known only from a seek on;
the consumer hands over a record only at or after it, and seeks back to it whenever it dropped records
the Kafka client had already returned.
"""

from __future__ import annotations

from typing import Generic, Hashable, Iterable, Mapping, TypeVar

TP = TypeVar("TP", bound=Hashable)


class ReadPositions(Generic[TP]):
    """Next offset to hand over per partition, and the partitions to seek back to it.

    >>> positions = ReadPositions()
    >>> positions.admit("p0", 5) is None  # not sought since assigned: not handed over
    True
    >>> positions.sought({"p0": 5})
    >>> positions.admit("p0", 5), positions.handed_over("p0", 5)
    (range(5, 5), None)
    >>> positions.admit("p0", 5) is None  # read again
    True
    >>> positions.admit("p0", 8)  # 6 and 7 are not records (transaction markers, compacted away)
    range(6, 8)
    >>> positions.handed_over("p0", 8)
    >>> positions.rewind("p0", 7)  # dropped after being handed over (a rebalance cleared the buffer)
    >>> positions.take_seeks()
    {'p0': 7}
    """

    def __init__(self) -> None:
        self._next: dict[TP, int] = {}
        self._seek_back: set[TP] = set()
        self.seeks = 0
        """Seeks and rewinds so far: the rest of a batch fetched before one is not handed over."""

    def sought(self, offsets: Mapping[TP, int]) -> None:
        """The Kafka client is about to be sought to ``offsets`` (set first, so that a batch fetched
        before the seek is dropped): read on from there."""
        self._next.update(offsets)
        self._seek_back.difference_update(offsets)
        self.seeks += 1

    def admit(self, tp: TP, offset: int) -> range | None:
        """None: do not hand over the record at ``offset`` (read again, or the partition's position is not
        known yet); else the offsets before it that hold no record (empty when it is the next one)."""
        expected = self._next.get(tp)
        if expected is None or offset < expected:
            return None
        return range(expected, offset)

    def handed_over(self, tp: TP, offset: int) -> None:
        self._next[tp] = offset + 1

    def dropped(self, tp: TP) -> None:
        """A record the Kafka client returned was not handed over: seek back to the next offset."""
        if tp in self._next:
            self._seek_back.add(tp)

    def interrupted(self) -> None:
        """Handing over stopped, maybe mid-batch (flow stopped): seek every partition back to its next
        offset before reading on."""
        self._seek_back.update(self._next)
        self.seeks += 1

    def rewind(self, tp: TP, offset: int) -> None:
        """The record at ``offset`` and those after it were handed over but dropped before processing."""
        if offset < self._next.get(tp, offset):
            self._next[tp] = offset
            self._seek_back.add(tp)
            self.seeks += 1

    def take_seeks(self) -> dict[TP, int]:
        """partition -> offset to seek the Kafka client to, once; call :meth:`sought` with them as the seek starts."""
        seeks = {tp: self._next[tp] for tp in self._seek_back}
        self._seek_back.clear()
        return seeks

    def forget(self, partitions: Iterable[TP]) -> None:
        """Partitions revoked or newly assigned: nothing is handed over until a seek sets their position."""
        for tp in partitions:
            self._next.pop(tp, None)
            self._seek_back.discard(tp)
