"""Recorded events for training: JSONL files, a folder of them, or the events topic, as raw lines.

Every line goes through the stream's own parser and privacy rule afterwards
(:func:`models.training.visits.read_visits`): a topic may hold what producers should not have sent.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.kafka_io import assign_all

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


class SourceError(ValueError):
    """A training source that cannot be read; the message names it."""


def recorded_lines(source: str, since: datetime | None = None) -> Iterator[bytes]:
    """The lines of ``source``: a JSONL file, a folder of ``*.jsonl`` files (by name), or
    ``kafka://host:port/topic`` read from the beginning (or from ``since``) to its current end."""
    if source.startswith("kafka://"):
        yield from read_topic(source, since)
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in JSONL_SUFFIXES and p.is_file())
        if not files:
            raise SourceError(f"{path} holds no {'/'.join(JSONL_SUFFIXES)} files")
    elif path.is_file():
        files = [path]
    else:
        raise SourceError(f"{path} does not exist")
    for file in files:
        with file.open("rb") as lines:
            for line in lines:
                line = line.strip()
                if line:
                    yield line


def read_topic(url: str, since: datetime | None = None) -> list[bytes]:
    """Every record value of a topic, from its start (or the first offset at ``since``) to its end now."""
    parsed = urlparse(url)
    topic = parsed.path.strip("/")
    if not parsed.netloc or not topic:
        raise SourceError(f"{url}: expected kafka://host:port/topic")
    return asyncio.run(_read_topic(parsed.netloc, topic, since))


async def _read_topic(bootstrap: str, topic: str, since: datetime | None) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                request_timeout_ms=15000)
    try:
        await consumer.start()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the source's error
        raise SourceError(f"cannot reach the broker {bootstrap}: {type(exc).__name__}: {exc}") from None
    try:
        try:
            partitions = await assign_all(consumer, topic)
        except RuntimeError:
            raise SourceError(f"topic {topic} does not exist on {bootstrap}") from None
        ends = await consumer.end_offsets(partitions)
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
            for tp, at in found.items():
                if at is None:
                    consumer.seek(tp, ends[tp])
                else:
                    consumer.seek(tp, at.offset)
        values: list[bytes] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                values.extend(r.value for r in records
                              if r.offset < ends[TopicPartition(r.topic, r.partition)] and r.value is not None)
        return values
    finally:
        await consumer.stop()
