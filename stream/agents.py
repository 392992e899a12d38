"""Faust agents, tasks and web views: thin wiring of topics and tables to :mod:`stream.sessions`."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import orjson
from faust.streams import _current_event  # Faust's RocksDB store picks a record's partition from it
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.pages import PageStats
from stream import metrics
from stream.app import (
    app, dead_letters, events, page_counters, page_feed, page_observations, page_table, pages, persona_feed,
    persona_learning, persona_model, personas, processor, sessions, SETTINGS, shared_persona,
)
from stream.offsets import OffsetGuard
from stream.pages import page_record
from stream.persona_sync import snapshot
from stream.sessions import Record

log = logging.getLogger(__name__)
order = OffsetGuard()


@app.on_partitions_revoked.connect
async def forget_revoked(app, revoked, **kwargs) -> None:
    order.forget(revoked)


@app.on_partitions_assigned.connect
async def forget_assigned(app, assigned, **kwargs) -> None:
    order.forget(assigned)


@app.task
async def load_pages() -> None:
    """Read the pages topic into memory: fully before the first batch is scored, then live."""
    await page_feed.run()


@app.task
async def load_persona_model() -> None:
    """Follow the shared persona model: the newest one before the first batch is scored, then live."""
    await persona_feed.run()


@app.timer(SETTINGS.persona_sync_s)
async def hand_over_persona_learning() -> None:
    """Send what this worker's persona learner learned to the merging worker."""
    for blob in shared_persona.take_learning():
        await (await app.producer.send(persona_learning.get_topic_name(), None, blob, None, None, None))
        metrics.PERSONA_HANDOVERS.inc()


@app.agent(persona_learning)
async def merge_persona_learning(stream):
    """On the worker that owns the learning topic's only partition: absorb every worker's learning
    into the next shared persona model and publish it to the compacted model topic."""
    async for blobs in stream.take(1000, within=SETTINGS.persona_sync_s):
        await persona_feed.ready.wait()
        learners = []
        for blob in blobs:
            try:
                learners.append(snapshot(blob))
            except ValueError as exc:
                log.warning("skipping a bad persona learning record: %s", exc)
        if learners:
            merged = shared_persona.absorb(learners)
            await (await app.producer.send(persona_model.get_topic_name(), b"persona", merged.to_bytes(),
                                           None, None, None))
            metrics.PERSONA_MERGES.inc()


@app.agent(events)
async def sessionize(stream):
    """Validate, sessionize, fold, score and publish, a batch at a time.

    Outputs and changelog records go straight to the producer; the batch's offsets are acked only
    after every send is confirmed, so a crash replays the batch instead of losing it.
    """
    send = app.producer.send
    changelog = sessions.changelog_topic.get_topic_name()
    async for batch in stream.take_events(SETTINGS.batch_size, within=SETTINGS.batch_window_s):
        await page_feed.ready.wait()
        await persona_feed.ready.wait()
        started = time.perf_counter()
        messages, rewind = order.admit([(e.message.tp, e.message.offset, e.message) for e in batch])
        for tp, offset in rewind.items():
            log.warning("records of %s skipped from offset %d: reading them again", tp, offset)
            await app.consumer.seek(tp, offset)
            metrics.REWINDS.inc()
        records = [Record(m.key, m.value, m.topic, m.partition, m.offset) for m in messages]
        by_partition = {e.message.partition: e for e in batch}
        _current_event.set(None)  # reads: the store finds each key's partition itself
        result = processor.process(records, sessions.data)
        pending = []
        for key, (partition, blob) in result.states.items():
            _current_event.set(weakref.ref(by_partition[partition]))  # writes: RocksDB picks its DB by it
            sessions.data[key] = blob
            pending.append(await send(changelog, key, blob, partition, None, None))
        _current_event.set(None)
        for persona in result.personas:
            pending.append(await send(personas.get_topic_name(), persona.session_id.encode(),
                                      persona.model_dump_json().encode(), None, None, None))
        for letter in result.dead_letters:
            pending.append(await send(dead_letters.get_topic_name(), None, letter.model_dump_json().encode(),
                                      None, None, None))
        for page_id, counts in result.page_observations.items():
            pending.append(await send(page_observations.get_topic_name(), page_id.encode(), orjson.dumps(counts),
                                      None, None, None))
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
        views = counts.get("views", 0)
        if views:
            stats = PageStats(page_id=key.decode(), source="observed", views=views,
                              bounce_rate=min(1.0, counts.get("bounces", 0) / max(counts.get("entrances", 0), 1)),
                              exit_rate=min(1.0, counts.get("exits", 0) / views), page_value=0.0)
            record_key, value = page_record(stats)
            await (await app.producer.send(pages.get_topic_name(), record_key, value, None, None, None))


@app.page("/metrics")
async def prometheus_metrics(web, request):
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/status")
async def status(web, request):
    return web.json({
        "intent_model_version": processor.intent.version,
        "persona_model_version": shared_persona.serving.version,
        "persona_model_ready": persona_feed.ready.is_set(),
        "persona_learned_pending": shared_persona.learner.learned,
        "partitions": sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == events.get_topic_name()),
        "pages": {"catalog": len(page_table.catalog), "observed": len(page_table.observed),
                  "ready": page_feed.ready.is_set()},
    })
