"""Small aiokafka helpers shared by the worker's feeds, ``tail``, the demo and the tests."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

log = logging.getLogger(__name__)


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


async def send_to_partition(producer: AIOKafkaProducer, topic: str, partition: int,
                            records: Iterable[tuple[bytes | None, bytes | None]],
                            sent: list[asyncio.Future] | None = None) -> list[asyncio.Future]:
    """Hand ``(key, value)`` records for one partition to the producer in order, in as few batches as its
    batch size allows; the futures complete when the broker has them. They are appended to ``sent`` as
    each batch is handed over (a batch waits until the partition's previous one is sent), so a caller
    that cancels the hand-over still has those of the batches handed over before."""
    sent = [] if sent is None else sent
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: a new batch always takes one
            sent.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    sent.append(await producer.send_batch(batch, topic, partition=partition))
    return sent


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


class CompactedFeed:
    """Every worker's copy of a compacted topic: each record goes to ``apply``, from the start, to
    the end before ``ready`` is set, then live. Records ``apply`` rejects (ValueError) are skipped.
    With an ``executor``, ``apply`` runs there (in order: a one-thread executor shared with the code
    that reads what ``apply`` changes)."""

    def __init__(self, bootstrap: str, topic: str, apply: Callable[[bytes, bytes | None], None],
                 executor: Executor | None = None) -> None:
        self.bootstrap, self.topic, self.apply, self.executor = bootstrap, topic, apply, executor
        self.ready = asyncio.Event()

    def _apply_all(self, records: list) -> None:
        for record in records:
            try:
                self.apply(record.key, record.value)
            except ValueError as exc:
                log.warning("skipping bad record at %s:%s:%s: %s", record.topic, record.partition, record.offset, exc)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            partitions = await assign_all(consumer, self.topic)
            end = await consumer.end_offsets(partitions)
            pending = set(partitions)
            while True:
                fetched = [r for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values()
                           for r in records]
                if fetched and self.executor is not None:
                    await asyncio.get_running_loop().run_in_executor(self.executor, self._apply_all, fetched)
                else:
                    self._apply_all(fetched)
                if not self.ready.is_set():
                    pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
                    if not pending:
                        log.info("%s loaded", self.topic)
                        self.ready.set()
        finally:
            await consumer.stop()
