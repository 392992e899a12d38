"""Producing records and knowing the broker has them: the one publishing helper of the agents and views."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable

from aiokafka.errors import KafkaError

from stream import metrics
from stream.app import app
from stream.state_table import Outgoing

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


async def publish(topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> Awaitable:
    """Hand one record to the producer; await the result to know the broker has it."""
    return await app.producer.send(topic, key, value, partition, None, None)


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
            await asyncio.gather(*[await publish(*record) for record in outgoing])
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
