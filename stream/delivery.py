"""Producing records and knowing the broker has them: the one publishing helper of the agents and views."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

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


async def _send_batches(outgoing: list[Outgoing]) -> list[asyncio.Future]:
    """Hand the records to the producer as one batch per partition (or more, each up to the producer's
    batch size), in order; the returned futures complete when the broker has them.

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
    sent = []
    for (topic, partition), records in by_partition.items():
        sent += await send_to_partition(producer, topic, partition, records)
    return sent


async def deliver(outgoing: list[Outgoing]) -> None:
    """Produce every record and wait until the broker confirms all of them.

    While the broker cannot be reached the records are sent again with exponential back-off (up to
    30 s): one log line when delivery starts failing, one when it works again, and a metric per
    retry. The batch stays unacknowledged meanwhile, so nothing is lost and nothing is skipped.
    """
    await track({record[0] for record in outgoing})
    delay = 0.5
    failing = False
    while True:
        try:
            await asyncio.gather(*await _send_batches(outgoing))
        except KafkaError as exc:
            if not failing:
                log.error("cannot deliver to Kafka (%r); retrying with back-off until it can", exc)
                failing = True
            metrics.DELIVERY_RETRIES.inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        if failing:
            log.warning("delivery to Kafka works again")
        return
