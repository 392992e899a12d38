"""Topic layout: names from settings, created explicitly with one partition count."""

from __future__ import annotations

import asyncio
import time
from functools import lru_cache

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from stream.config import Settings

TABLES = ("sessions", "visits", "page-counters")
"""The worker's Faust tables (:mod:`stream.app`). Their changelog topics are created with the others, before a
worker starts: Faust creates them at start-up too, but a worker whose consumer has no metadata for a
changelog topic yet when it assigns partitions leaves that table's changelog out, so no worker restores
the table when its partitions move (seen under load: page counters restarted from zero)."""
VISIBLE_WITHIN_S = 30.0
"""Longest to wait until the broker's metadata lists every topic just created."""


class TopicLayoutError(RuntimeError):
    """An existing topic whose partition count does not match the configured one."""


def page_observations_topic(settings: Settings) -> str:
    return f"{settings.pages_topic}.observations"


def persona_model_topic(settings: Settings) -> str:
    return f"{settings.personas_topic}.model"


def persona_learning_topic(settings: Settings) -> str:
    return f"{settings.personas_topic}.learning"


def changelog_topic(settings: Settings, table: str) -> str:
    """The changelog topic Faust names for ``table`` of the worker's app."""
    return f"{settings.app_id}-{table}-changelog"


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
        **{changelog_topic(settings, table): (n, {"cleanup.policy": "compact"}) for table in TABLES},
    }


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics and wait until the broker's metadata lists them all; fail with a clear message
    if an existing one has other partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        wanted = layout(settings)
        counts = await _partition_counts(admin, list(wanted))
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
        deadline = time.monotonic() + VISIBLE_WITHIN_S
        while missing and len(await _partition_counts(admin, list(wanted))) < len(wanted):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics created but not in the broker's metadata after {VISIBLE_WITHIN_S:g} s")
            await asyncio.sleep(0.1)
        return [t.name for t in missing]
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """topic -> partitions, of the ``topics`` the broker's metadata lists."""
    return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)
            if t.get("error_code", 0) == 0}
