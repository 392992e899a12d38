"""Faust agents and timers: thin wiring of the app's topics and tables to the pure processing in
:mod:`stream.sessions`, :mod:`stream.pages` and :mod:`stream.persona_sync`. Found by autodiscovery."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable

import orjson

from stream import metrics
from stream.app import (
    app, dead_letters, events, page_counters, page_observations, pages, persona_learning, persona_model, personas,
    runtime, sessions, settings,
)
from stream.offsets import OffsetGuard
from stream.pages import observed_stats, page_record
from stream.persona_sync import snapshot
from stream.sessions import Record
from stream.state_table import read_states, write_states

log = logging.getLogger(__name__)
order = OffsetGuard()


async def publish(topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Awaitable:
    """Hand one record to the producer; await the result to know the broker has it."""
    return await app.producer.send(topic, key, value, partition, None, None)


@app.on_partitions_revoked.connect
async def forget_revoked(app, revoked, **kwargs) -> None:
    order.forget(revoked)


@app.on_partitions_assigned.connect
async def forget_assigned(app, assigned, **kwargs) -> None:
    order.forget(assigned)


@app.task
async def load_pages() -> None:
    """Read the pages topic into memory: fully before the first batch is scored, then live."""
    await runtime().page_feed.run()


@app.task
async def load_persona_model() -> None:
    """Follow the shared persona model: the newest one before the first batch is scored, then live."""
    await runtime().persona_feed.run()


@app.timer(settings.persona_sync_s)
async def hand_over_persona_learning() -> None:
    """Send what this worker's persona learner learned to the merging worker."""
    for blob in runtime().personas.take_learning():
        await (await publish(persona_learning.get_topic_name(), None, blob))
        metrics.PERSONA_HANDOVERS.inc()


@app.agent(persona_learning)
async def merge_persona_learning(stream):
    """On the worker that owns the learning topic's only partition: absorb every worker's learning
    into the next shared persona model and publish it to the compacted model topic."""
    shared = runtime().personas
    async for blobs in stream.take(1000, within=settings.persona_sync_s):
        await runtime().persona_feed.ready.wait()
        learners = []
        for blob in blobs:
            try:
                learners.append(snapshot(blob))
            except ValueError as exc:
                log.warning("skipping a bad persona learning record: %s", exc)
        if learners:
            merged = shared.absorb(learners)
            await (await publish(persona_model.get_topic_name(), b"persona", merged.to_bytes()))
            metrics.PERSONA_MERGES.inc()


@app.agent(events)
async def sessionize(stream):
    """Validate, sessionize, fold, score and publish, a batch at a time.

    Outputs and changelog records go straight to the producer; the batch's offsets are acked only
    after every send is confirmed, so a crash replays the batch instead of losing it.
    """
    worker = runtime()
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_window_s):
        await worker.wait_ready()
        started = time.perf_counter()
        messages, rewind = order.admit([(e.message.tp, e.message.offset, e.message) for e in batch])
        for tp, offset in rewind.items():
            log.warning("records of %s skipped from offset %d: reading them again", tp, offset)
            await app.consumer.seek(tp, offset)
            metrics.REWINDS.inc()
        records = [Record(m.key, m.value, m.topic, m.partition, m.offset) for m in messages]
        result = worker.processor.process(records, read_states(sessions))
        pending = await write_states(sessions, result.states, {e.message.partition: e for e in batch}, publish)
        for persona in result.personas:
            pending.append(await publish(personas.get_topic_name(), persona.session_id.encode(),
                                         persona.model_dump_json().encode()))
        for letter in result.dead_letters:
            pending.append(await publish(dead_letters.get_topic_name(), None, letter.model_dump_json().encode()))
        for page_id, counts in result.page_observations.items():
            pending.append(await publish(page_observations.get_topic_name(), page_id.encode(), orjson.dumps(counts)))
        await asyncio.gather(*pending)
        metrics.EVENTS.inc(len(records))
        metrics.DEAD_LETTERS.inc(len(result.dead_letters))
        metrics.DUPLICATES.inc(result.duplicates)
        metrics.PERSONAS.inc(len(result.personas))
        metrics.VISITS_CLOSED.inc(result.closed)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)


@app.agent(page_observations)
async def aggregate_pages(stream):
    """Count views, entrances, exits and bounces per page; publish observed page statistics."""
    async for event in stream.events():
        key = event.message.key
        counts = orjson.loads(page_counters[key]) if key in page_counters else {}
        for name, n in orjson.loads(event.message.value).items():
            counts[name] = counts.get(name, 0) + n
        page_counters[key] = orjson.dumps(counts)
        stats = observed_stats(key.decode(), counts)
        if stats is not None:
            await (await publish(pages.get_topic_name(), *page_record(stats)))
