"""Small aiokafka helpers shared by the worker's page feed, ``tail`` and the tests."""

from __future__ import annotations

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
