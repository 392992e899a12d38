"""Topic layout: names from settings, created explicitly with one partition count."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from stream.config import Settings


class TopicLayoutError(RuntimeError):
    """An existing topic whose partition count does not match the configured one."""


def page_observations_topic(settings: Settings) -> str:
    return f"{settings.pages_topic}.observations"


def persona_model_topic(settings: Settings) -> str:
    return f"{settings.personas_topic}.model"


def persona_learning_topic(settings: Settings) -> str:
    return f"{settings.personas_topic}.learning"


@lru_cache(maxsize=1 << 16)
def key_hash(key: bytes) -> int:
    """The partitioning hash of a record key, as Kafka's default partitioner computes it (murmur2,
    positive): cached, since a visit's key comes back batch after batch (aiokafka's murmur2 is Python)."""
    return murmur2(key) & 0x7FFFFFFF


def layout(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """topic -> (partitions, configs) for every topic the pipeline reads or writes."""
    n = settings.partitions
    return {
        settings.events_topic: (n, {}),
        settings.personas_topic: (n, {}),
        settings.dlq_topic: (1, {}),
        settings.pages_topic: (1, {"cleanup.policy": "compact"}),
        page_observations_topic(settings): (n, {}),
        persona_model_topic(settings): (1, {"cleanup.policy": "compact"}),
        persona_learning_topic(settings): (1, {}),
    }


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; fail with a clear message if an existing one has other partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        wanted = layout(settings)
        existing = await admin.describe_topics(list(wanted))
        counts = {t["topic"]: len(t["partitions"]) for t in existing if t.get("error_code", 0) == 0}
        for topic, count in counts.items():
            if count != wanted[topic][0]:
                raise TopicLayoutError(f"topic {topic} has {count} partitions, configured {wanted[topic][0]} "
                                       f"(set PERSONASTREAM_PARTITIONS={count} or recreate the topic)")
        missing = [NewTopic(topic, n, settings.replication_factor, topic_configs=cfg)
                   for topic, (n, cfg) in wanted.items() if topic not in counts]
        for topic in missing:
            try:
                await admin.create_topics([topic])
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in missing]
    finally:
        await admin.close()
