"""The sessions table, read and written a batch at a time.

The session agent reads and writes the table's store (``table.data``) directly and sends the
changelog records itself, because a batch's offsets may be acknowledged only once every state
write of the batch is confirmed by the broker: a crash then replays the batch instead of losing
state. (``table[key] = value`` would hand the changelog record to the producer in the background,
tied to one event, while a batch spans hundreds.)

Faust's RocksDB store picks the database of a read or write from the partition of the event being
processed, which it finds in ``faust.streams._current_event``. A batch holds events of several
partitions, so :func:`read_states` clears it (the store then finds each key in every partition's
database) and :func:`write_states` sets it, key by key, to an event of the key's partition.
"""

from __future__ import annotations

import weakref
from typing import Awaitable, Callable, Mapping, MutableMapping

import faust
from faust.streams import _current_event

Publish = Callable[[str, bytes | None, bytes, int | None], Awaitable[Awaitable]]
"""(topic, key, value, partition) -> awaitable of the delivery confirmation."""


def read_states(table: faust.Table) -> MutableMapping[bytes, bytes]:
    """The table's store, ready for reads of keys of any partition."""
    _current_event.set(None)
    return table.data


async def write_states(table: faust.Table, states: Mapping[bytes, tuple[int, bytes]],
                       event_of_partition: Mapping[int, faust.EventT], publish: Publish) -> list[Awaitable]:
    """Store every ``key -> (partition, blob)`` and send it to the changelog; returns the deliveries to await."""
    changelog = table.changelog_topic.get_topic_name()
    store = table.data
    deliveries = []
    try:
        for key, (partition, blob) in states.items():
            _current_event.set(weakref.ref(event_of_partition[partition]))
            store[key] = blob
            deliveries.append(await publish(changelog, key, blob, partition))
    finally:
        _current_event.set(None)
    return deliveries
