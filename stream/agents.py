"""Faust agents and timers: thin wiring of the app's topics and tables to the pure processing in
:mod:`stream.sessions`, :mod:`stream.pages` and :mod:`stream.persona_sync`. Found by autodiscovery."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

import orjson

from models.bandit import Handover
from schemas.dead_letter import DeadLetter
from stream import metrics
from stream.app import (
    app,
    dead_letters,
    event_intake,
    observation_intake,
    page_counters,
    page_observations,
    pages,
    persona_learning,
    persona_model,
    personas,
    runtime,
    sessions,
    settings,
    visits,
)
from stream.delivery import deliver, track
from stream.heap import FreedMemory
from stream.intake import ack
from stream.logs import log_at_handler_level
from stream.pages import (
    CountedPages,
    applied_key,
    compact_json,
    observation_records,
    observations,
    observed_stats,
    page_record,
)
from stream.persona_sync import BANDIT_KEY, PERSONA_KEY, snapshot
from stream.sessions import BatchResult
from stream.state_table import read_states, write_states
from stream.topics import key_hash

log = logging.getLogger(__name__)


@contextmanager
def unacked_on_failure(what: str) -> Iterator[None]:
    """Stop the worker at once, without committing, if a batch fails as a whole.

    Per-record failures never get here (they are dead letters); this is for bugs and lost
    resources. The batch's records are not acknowledged, and a task that went on after a failed
    batch would acknowledge the next ones past it. The records are read again by the worker that
    takes the partitions over (or this one, restarted by its supervisor).
    """
    try:
        yield
    except Exception:
        log.critical("%s failed as a whole; exiting without committing its offsets", what, exc_info=True)
        logging.shutdown()
        os._exit(70)


@app.on_partitions_revoked.connect
async def finish_revoked(app, revoked, **kwargs) -> None:
    await app.finish_batches()


@app.on_partitions_assigned.connect
async def reindex_assigned(app, assigned, **kwargs) -> None:
    reindex.set()
    recount.set()
    await track_output_topics()


async def track_output_topics() -> None:
    """Keep metadata of every topic this worker writes (the visit lookup routes by the visits changelog);
    called once topics and changelogs exist, so no metadata request can create one."""
    written = (personas, dead_letters, page_observations, pages, persona_learning, persona_model)
    changelogs = (sessions, visits, page_counters)
    await track({t.get_topic_name() for t in written} | {t.changelog_topic.get_topic_name() for t in changelogs})


reindex = asyncio.Event()
"""Set on every assignment: the next session batch first rebuilds the index of open and ended visits
from the table (recovered by then: Faust delivers no event before its tables are)."""
recount = asyncio.Event()
"""Set on every assignment: the next page batch first rebuilds the recency of the counted pages from the table."""


@app.task
async def skip_unhandled_debug_lines() -> None:
    """Skip the debug lines no handler takes (Faust's start-up spinner is done by now)."""
    log_at_handler_level()


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
    await hand_over_learning()


@app.on_before_shutdown.connect
async def hand_over_at_shutdown(app, **kwargs) -> None:
    """A stopping worker hands over what it learned since the last timer (its consumer has stopped);
    given up after 10 s if Kafka cannot take it."""
    try:
        await asyncio.wait_for(hand_over_learning(), timeout=10.0)
    except asyncio.TimeoutError:
        log.warning("could not hand over this worker's last learning before stopping")


async def hand_over_learning() -> None:
    """Send what this worker's persona learner and action rewards learned to the merging worker."""
    worker = runtime()
    shared = worker.personas
    learning = await worker.serially(shared.take_learning)
    records = [(persona_learning.get_topic_name(), None, blob, None) for blob in learning]
    metrics.PERSONA_HANDOVERS.inc(len(records))
    rewards = await worker.serially(shared.take_rewards)
    if rewards is not None:
        records.append((persona_learning.get_topic_name(), BANDIT_KEY, rewards, None))
    await deliver(records)


@app.agent(persona_learning)
async def merge_persona_learning(stream):
    """On the worker that owns the learning topic's only partition: absorb every worker's learning
    into the next shared persona model and action posteriors, and publish them to the compacted model topic."""
    shared = runtime().personas
    async for batch in stream.take_events(1000, within=settings.persona_sync_s):
        await runtime().persona_feed.ready.wait()
        learners, handovers = [], []
        for event in batch:
            try:
                if event.message.key == BANDIT_KEY:
                    handovers.append(Handover.from_bytes(event.message.value))
                else:
                    learners.append(snapshot(event.message.value))
            except ValueError as exc:
                log.warning("skipping a bad learning record: %s", exc)
        outgoing = []
        if learners:
            merged = await runtime().serially(shared.absorb, learners)
            outgoing.append((persona_model.get_topic_name(), PERSONA_KEY, merged.to_bytes(), None))
            metrics.PERSONA_MERGES.inc()
        if handovers:
            posteriors = await runtime().serially(shared.absorb_rewards, handovers)
            outgoing.append((persona_model.get_topic_name(), BANDIT_KEY, posteriors.to_bytes(), None))
        await deliver(outgoing)


@app.task
async def sessionize() -> None:
    """Validate, sessionize, fold, score and publish, a batch at a time.

    Outputs and changelog records go straight to the producer; the batch's offsets are acked only
    after every record is confirmed, so a crash replays the batch instead of losing it. The next
    batch is processed while the broker confirms this one, and handed to the producer only once it
    has (so a visit's outputs never overtake each other, also when delivery is retried).
    """
    worker = runtime()
    delivering: asyncio.Future | None = None
    while True:
        batch = await event_intake.take(settings.batch_size, settings.batch_window_s)
        with unacked_on_failure("session batch"):
            await worker.wait_ready()
            if reindex.is_set():
                reindex.clear()
                indexed = await worker.serially(worker.processor.restore_index, list(read_states(sessions).items()))
                log.info("indexed %d stored sessions", indexed)
            started = time.perf_counter()
            result = await worker.serially(worker.processor.process, batch, read_states(sessions))
            outgoing = write_states(sessions, result.states)
            latest = result.personas
            newest = {key: (partition, latest.get(key)) for key, (partition, blob) in result.states.items()
                      if key in latest or blob is None}
            outgoing += write_states(visits, newest)
            outgoing += [(personas.get_topic_name(), key, value, None) for key, value in result.published()]
            outgoing += [(dead_letters.get_topic_name(), None, letter.model_dump_json().encode(), None)
                         for letter in result.dead_letters]
            outgoing += [(page_observations.get_topic_name(), None, value, partition) for partition, value
                         in observation_records(result.page_observations, settings.partitions)]
            if delivering is not None:
                await delivering
            delivering = asyncio.ensure_future(publish_batch(outgoing, batch, result, started))


freed = FreedMemory()
"""Trims the heaps once the session batches have deleted enough visits."""


async def publish_batch(outgoing: list, messages: list, result: BatchResult, started: float) -> None:
    """Deliver a processed session batch, then acknowledge its records."""
    with unacked_on_failure("session batch"):
        await deliver(outgoing)
        ack(app.consumer, messages)
        event_intake.finish()
        if freed.deleted(sum(blob is None for _, blob in result.states.values())):
            await asyncio.to_thread(freed.release)
        metrics.EVENTS.inc(len(messages))
        metrics.DEAD_LETTERS.inc(len(result.dead_letters))
        metrics.DUPLICATES.inc(result.duplicates)
        metrics.PERSONAS.inc(len(result.personas) + len(result.ended_personas))
        metrics.VISITS_CLOSED.inc(result.closed)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)


@app.task
async def aggregate_pages() -> None:
    """Count views, entrances, exits and bounces per page, a batch at a time (each record holds the
    counts of a session batch's pages this partition owns); publish the observed statistics of each
    page the batch changed, once. At most ``max_page_counters`` pages per partition keep counters:
    the least recently counted beyond it are deleted, with their observed statistics."""
    counted = CountedPages(settings.max_page_counters)
    while True:
        batch = await observation_intake.take(settings.batch_size, settings.page_window_s)
        with unacked_on_failure("page batch"):
            store = read_states(page_counters)
            forgotten: dict[bytes, int] = {}
            if recount.is_set():
                recount.clear()
                forgotten.update((key, partition) for partition, key in counted.restore(counted_pages(store)))
            totals: dict[bytes, tuple[int, dict[str, int]]] = {}
            applied: dict[int, int] = {}
            letters = []
            for message in batch:
                if message.partition not in applied:
                    stored = store.get(applied_key(message.partition))
                    applied[message.partition] = int(stored) if stored else -1
                if message.offset <= applied[message.partition]:
                    continue  # read again after a rebalance or a crash: counted already
                applied[message.partition] = message.offset
                try:
                    observed = observations(message.value)
                except ValueError as exc:
                    letters.append(DeadLetter.for_payload(
                        message.value, reason=str(exc), topic=message.topic, partition=message.partition,
                        offset=message.offset, received_at=datetime.now(timezone.utc)))
                    continue
                for page_id, observed_counts in observed.items():
                    key = page_id.encode()
                    forgotten.pop(key, None)  # counted again
                    forgotten.update((gone, message.partition) for gone in counted.count(message.partition, key))
                    if key not in totals:
                        stored = store.get(key)
                        totals[key] = (message.partition, orjson.loads(stored) if stored else {})
                    counts = totals[key][1]
                    for name, n in observed_counts.items():
                        counts[name] = counts.get(name, 0) + n
            retracted = [b"observed/" + key for key in forgotten if was_published(key, totals, store)]
            counters = {key: (partition, compact_json(counts)) for key, (partition, counts) in totals.items()
                        if key not in forgotten}
            counters.update({key: (partition, None) for key, partition in forgotten.items()})
            counters.update({applied_key(p): (p, b"%d" % offset) for p, offset in applied.items()})
            outgoing = write_states(page_counters, counters)
            for key, (_, counts) in totals.items():
                stats = observed_stats(key.decode(), counts) if key not in forgotten else None
                if stats is not None:
                    outgoing.append((pages.get_topic_name(), *page_record(stats), None))
            outgoing += [(pages.get_topic_name(), key, None, None) for key in retracted]
            outgoing += [(dead_letters.get_topic_name(), None, letter.model_dump_json().encode(), None)
                         for letter in letters]
            await deliver(outgoing)
            ack(app.consumer, batch)
            observation_intake.finish()
            metrics.DEAD_LETTERS.inc(len(letters))


def counted_pages(store) -> list[tuple[int, bytes]]:
    """(partition, page key) of the page counters this worker's page observations partitions own."""
    owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == page_observations.get_topic_name()}
    keyed = ((key_hash(key) % settings.partitions, key) for key in store.keys() if not key.startswith(b"\xff"))
    return [(partition, key) for partition, key in keyed if partition in owned]


def was_published(key: bytes, totals: dict[bytes, tuple[int, dict[str, int]]], store) -> bool:
    """Whether a page's counts reached the views its observed statistics are published from."""
    if key in totals:
        counts = totals[key][1]
    else:
        stored = store.get(key)
        counts = orjson.loads(stored) if stored else {}
    return observed_stats(key.decode(), counts) is not None
