"""Small aiokafka helpers shared by the worker's page feed, ``tail``, the demo and the tests."""

from __future__ import annotations

from typing import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition


async def assign_all(consumer: AIOKafkaConsumer, topic: str, from_beginning: bool = True) -> list[TopicPartition]:
    """Assign every partition of ``topic`` (metadata fetched first) and seek to its start or end."""
    cluster = await consumer._client.fetch_all_metadata()  # the consumer's own view lists only subscribed topics
    numbers = cluster.partitions_for_topic(topic)
    if not numbers:
        raise RuntimeError(f"topic {topic} does not exist")
    partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
    consumer.assign(partitions)
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    else:
        await consumer.seek_to_end(*partitions)
    return partitions


async def poll_topic(bootstrap: str, topic: str, from_beginning: bool = True,
                     timeout_ms: int = 200) -> AsyncIterator[list[bytes]]:
    """The values of every partition of ``topic``, one (possibly empty) list per poll, without a group.

    Use inside ``contextlib.aclosing`` so the consumer is stopped when the caller stops reading.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await assign_all(consumer, topic, from_beginning)
        while True:
            batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
            yield [record.value for records in batches.values() for record in records]
    finally:
        await consumer.stop()
