"""Faust tables read and written a batch at a time.

The agents read and write a table's store (``table.data``) directly and send the changelog
records themselves, because a batch's offsets may be acknowledged only once every write of the
batch is confirmed by the broker: a crash then replays the batch instead of losing state.
(``table[key] = value`` would hand the changelog record to the producer in the background, on the
partition of the one event being processed, while a batch spans hundreds of several partitions.)

Faust's RocksDB store picks the database of a read or write from the partition of the event being
processed, which it finds in ``faust.streams._current_event``. A batch holds events of several
partitions, so :func:`read_states` clears it (the store then finds each key in every partition's
database) and :func:`write_states` sets it, key by key, to a stand-in event of the key's partition.
"""

from __future__ import annotations

import weakref
from typing import Mapping, MutableMapping

import faust
from faust.streams import _current_event


class _PartitionEvent:
    """What Faust's RocksDB store reads of the current event: ``event.message.partition``."""

    __slots__ = ("message", "partition", "__weakref__")

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition


Outgoing = tuple[str, bytes | None, bytes | None, int | None]
"""A record to produce: (topic, key, value, partition or None for the producer's partitioner)."""


def read_states(table: faust.Table) -> MutableMapping[bytes, bytes]:
    """The table's store, ready for reads of keys of any partition."""
    _current_event.set(None)
    return table.data


def write_states(table: faust.Table, states: Mapping[bytes, tuple[int, bytes | None]]) -> list[Outgoing]:
    """Store every ``key -> (partition, blob)`` (None deletes the key); returns the changelog records
    to produce (a tombstone for a deleted key)."""
    changelog = table.changelog_topic.get_topic_name()
    store = table.data
    events: dict[int, _PartitionEvent] = {}
    try:
        for key, (partition, blob) in states.items():
            event = events.get(partition) or events.setdefault(partition, _PartitionEvent(partition))
            _current_event.set(weakref.ref(event))
            if blob is None:
                store.pop(key, None)
            else:
                store[key] = blob
    finally:
        _current_event.set(None)
    return [(changelog, key, blob, partition) for key, (partition, blob) in states.items()]
