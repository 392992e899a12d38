"""Producing records and knowing the broker has them: the one publishing helper of the agents and views."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaConnectionError, KafkaError

from stream import metrics
from stream.app import app
from stream.kafka_io import send_to_partition
from stream.state_table import Outgoing
from stream.topics import key_hash

log = logging.getLogger(__name__)
_tracked: set[str] = set()


async def track(topics: set[str]) -> None:
    """Make the producer keep metadata of ``topics``.

    aiokafka's client refreshes metadata only for the topics it tracks, and a send to a topic it
    already knew from an all-topics refresh does not track it. Once it tracks some topics (the first
    send to an unknown one), the others lose their leaders in its metadata and records sent to them
    wait until the request times out (minutes), with the batch and the offset commit waiting on them.
    """
    new = topics - _tracked
    if new:
        client = app.producer._ensure_producer().client  # faust-streaming 0.15.3: the aiokafka producer
        await asyncio.gather(*(client.add_topic(topic) for topic in new))
        _tracked.update(new)


async def _send_batches(outgoing: list[Outgoing], sent: list[asyncio.Future]) -> None:
    """Hand the records to the producer as one batch per partition (or more, each up to the producer's
    batch size), in order; the futures appended to ``sent`` complete when the broker has them.

    One record at a time through ``producer.send`` costs ~15 µs each (a future, a metadata check and
    the accumulator per record); a batch builder costs ~2 µs a record.
    """
    producer = app.producer._ensure_producer()  # faust-streaming 0.15.3: the aiokafka producer
    partitions = {}
    for topic in {topic for topic, _, _, partition in outgoing if partition is None}:
        await producer.client._wait_on_metadata(topic)  # the partitioner needs the topic's partitions
        partitions[topic] = (list(producer.client.cluster.partitions_for_topic(topic)),
                             list(producer.client.cluster.available_partitions_for_topic(topic)))
    by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
    for topic, key, value, partition in outgoing:
        if partition is None:
            every, available = partitions[topic]
            partition = (every[key_hash(key) % len(every)] if key is not None
                         else producer._partitioner(None, every, available))
        by_partition.setdefault((topic, partition), []).append((key, value))
    for (topic, partition), records in by_partition.items():
        await send_to_partition(producer, topic, partition, records, sent)


UNCONFIRMED_S = 1.0
"""A delivery not confirmed this long makes the others wait until the broker answers a metadata request."""
_broker_away: asyncio.Task | None = None
"""Since a delivery failed or was not confirmed in time: asks the broker for metadata until it answers;
every delivery waits for it."""


async def deliver(outgoing: list[Outgoing]) -> None:
    """Produce every record and wait until the broker confirms all of them.

    While the broker cannot be reached the records are sent again with exponential back-off (up to
    30 s): one log line when delivery starts failing, one when it works again, and a metric per
    retry. The batch stays unacknowledged meanwhile, so nothing is lost and nothing is skipped.
    After a failed delivery, or one not confirmed within :data:`UNCONFIRMED_S`, no delivery hands
    records to the producer until the broker answers a metadata request (:func:`_ask_until_answered`).
    """
    await track({record[0] for record in outgoing})
    delay = 0.5
    failing = False
    while True:
        if _broker_away is not None and not _broker_away.done():
            await asyncio.shield(_broker_away)
        handed: list[asyncio.Future] = []
        handing = asyncio.ensure_future(_send_batches(outgoing, handed))
        _handing.add(handing)
        try:
            await asyncio.wait({handing})
            if handing.cancelled():  # by _ask_until_answered: the broker is away
                asyncio.gather(*handed, return_exceptions=True)  # those handed over fail or go out: not awaited
                raise KafkaConnectionError("the broker is away; the rest of the records were not handed over")
            handing.result()
            sent = asyncio.gather(*handed)
            if not (await asyncio.wait({sent}, timeout=UNCONFIRMED_S))[0]:
                _start_asking()  # the broker may be away: hand it no more records until it answers
            await sent
        except KafkaError as exc:
            if not failing:
                log.error("cannot deliver to Kafka (%r); retrying with back-off until it can", exc)
                failing = True
            metrics.DELIVERY_RETRIES.inc()
            _start_asking()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        finally:
            _handing.discard(handing)
            handing.cancel()  # done by now, unless this delivery itself is cancelled
        if failing:
            log.warning("delivery to Kafka works again")
        return


_handing: set[asyncio.Task] = set()
"""Deliveries handing records to the producer; a batch waits there until the partition's previous one is sent."""


def _start_asking() -> None:
    global _broker_away
    if _broker_away is None or _broker_away.done():
        _broker_away = asyncio.create_task(_ask_until_answered())


async def _ask_until_answered() -> None:
    """Ask for metadata with exponential back-off (0.5 s to 30 s) until the broker answers.

    Records handed to the producer while their partitions have no leader (the broker is away) make
    the Kafka client ask for metadata again and again, without back-off, until they expire
    (``PRODUCE_TIMEOUT_S``): that is a whole CPU for as long as records keep coming.
    """
    client = app.producer._ensure_producer().client  # faust-streaming 0.15.3: the aiokafka producer
    delay = 0.5
    while not await client.force_metadata_update():
        for handing in _handing:  # a batch queued behind one waiting for a leader would wait as long again
            handing.cancel()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
