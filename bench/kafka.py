"""Measurements through the broker: raw ceiling, pipeline throughput and scale, latency under load."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Mapping, Sequence

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench import spy
from bench.rig import CLI, Rig, cpu_seconds, thread_cpu_seconds
from bench.stats import LatencyMatcher, completion, latency_summary
from stream.config import Settings
from stream.kafka_io import assign_all, send_to_partition
from stream.tools.replay import Outgoing, paced, produce, seed_pages
from stream.topics import key_hash

Advance = Callable[[int], None]
PROFILE_DELAY_S, PROFILE_S = 15, 40
"""A profiled worker is sampled by py-spy for PROFILE_S seconds from PROFILE_DELAY_S after its start (once
it has loaded and is busy)."""
WARMUP = Outgoing(b"bench-warmup", orjson.dumps({
    "type": "page_view", "event_id": "bench-warmup-0", "session_id": "bench-warmup", "ts": "2024-01-01T00:00:00Z",
    "page": {"id": "bench/warmup", "type": "home"}}), None)


def preload(bootstrap: str, topic: str, records: Sequence[Outgoing], advance: Advance) -> dict[str, float]:
    """Produce ``records`` as fast as the replay producer goes; return the rate."""
    started = time.perf_counter()
    sent = asyncio.run(produce(bootstrap, topic, paced(list(records), None), advance))
    seconds = time.perf_counter() - started
    return {"events": sent, "seconds": round(seconds, 2), "events_per_s": round(sent / seconds, 1)}


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest")


async def ceiling(bootstrap: str, topic: str, total: int, advance: Advance) -> dict[str, float]:
    """A plain AIOKafkaConsumer reading and orjson-decoding ``total`` records of ``topic``."""
    consumer = _consumer(bootstrap)
    await consumer.start()
    try:
        await assign_all(consumer, topic)
        loads = orjson.loads
        read = 0
        started = time.perf_counter()
        while read < total:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    loads(record.value)
                read += len(records)
                advance(len(records))
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"events": read, "seconds": round(seconds, 2), "events_per_s": round(read / seconds, 1)}


async def offered_load(bootstrap: str, source: str, sink: str, records: Sequence[Outgoing], rate: float,
                       covered: Callable[[bytes], int | None], advance: Advance, drain_s: float = 30.0,
                       base: Mapping[bytes, int] | None = None) -> dict:
    """Send ``records`` to ``source`` at ``rate`` events/s; time each until an output on ``sink`` covers it.

    ``covered(value)`` says how many of its key's events an output reflects (None: the next one),
    ``base`` how many of them were sent before this run.
    Send and receive times are taken in this process with one clock.
    """
    matcher = LatencyMatcher(base=base or {})
    consumer = _consumer(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1, max_batch_size=262144)
    await consumer.start()
    await producer.start()
    try:
        for tp in await assign_all(consumer, sink, from_beginning=False):
            await consumer.position(tp)  # resolve the end offsets now, before anything is sent
        partitions = sorted(await producer.partitions_for(source))
        stop = asyncio.Event()

        async def receive() -> None:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=50, max_records=5000)
                now = time.perf_counter()
                for batch in batches.values():
                    for record in batch:
                        matcher.output(record.key, covered(record.value), now)

        receiver = asyncio.create_task(receive())
        started = time.perf_counter()
        sent = 0
        while sent < len(records):
            due = min(len(records), int((time.perf_counter() - started) * rate) + 1)
            advance(due - sent)
            now = time.perf_counter()
            for record in records[sent:due]:
                matcher.send(record.key, now)
            await _send_batches(producer, source, partitions, records[sent:due])
            sent = due
            await asyncio.sleep(0.002)
        offered = sent / (time.perf_counter() - started)
        await producer.flush()
        deadline = time.perf_counter() + drain_s
        while matcher.pending and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await receiver
    finally:
        await producer.stop()
        await consumer.stop()
    return {"offered_events_per_s": round(offered, 1), "events": len(records), "unmatched": matcher.pending,
            **latency_summary(matcher.latencies)}


async def _send_batches(producer: AIOKafkaProducer, topic: str, partitions: list[int],
                        records: Sequence[Outgoing]) -> None:
    """Hand ``records`` to the producer as one batch per partition (the partition Kafka's default
    partitioner gives each key): a record at a time costs the load generator ~15 us each, CPU the
    worker under test shares on a small machine."""
    by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
    for record in records:
        by_partition.setdefault(partitions[key_hash(record.key) % len(partitions)], []).append(
            (record.key, record.value))
    for partition, pairs in by_partition.items():
        await send_to_partition(producer, topic, partition, pairs)


def events_seen(value: bytes) -> int:
    return orjson.loads(value)["events_seen"]


async def wait_done(conf: Settings, total: int, complete: Callable[[list], bool], check: Callable[[], None],
                    advance: Advance, timeout: float, quiet_s: float = 15.0, stall_s: float = 60.0,
                    first_output: Callable[[], None] = lambda: None) -> None:
    """Wait until the worker group has committed ``total`` offsets of the events topic, or its outputs
    have stopped growing for ``quiet_s`` and are ``complete`` (Faust 0.15.3 can leave a partition's
    commit behind after a rebalance although every event was processed), or for ``stall_s``.
    ``first_output`` is called once, when the first output is seen (polled every second)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=conf.bootstrap)
    outputs = _consumer(conf.bootstrap)
    await admin.start()
    await outputs.start()
    try:
        partitions = await assign_all(outputs, conf.personas_topic, from_beginning=False)
        deadline = time.monotonic() + timeout
        done = produced = 0
        quiet_since = checked = time.monotonic()
        while done < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers committed {done}/{total} offsets of {conf.events_topic} in {timeout:.0f}s")
            check()
            await asyncio.sleep(1.0)
            now = sum((await outputs.end_offsets(partitions)).values())
            if now != produced:
                if not produced:
                    first_output()
                produced, quiet_since = now, time.monotonic()
            elif produced and time.monotonic() - quiet_since > stall_s:
                return  # stalled: the report says how many visits are incomplete
            elif produced and min(time.monotonic() - quiet_since, time.monotonic() - checked) > quiet_s:
                if complete(await read_outputs(conf.bootstrap, conf.personas_topic)):
                    return
                checked = time.monotonic()
            try:
                offsets = await admin.list_consumer_group_offsets(conf.app_id)
            except KafkaError:  # the group (or its coordinator) does not exist yet
                continue
            now = sum(max(o.offset, 0) for tp, o in offsets.items() if tp.topic == conf.events_topic)
            advance(now - done)
            done = now
    finally:
        await outputs.stop()
        await admin.close()


async def read_outputs(bootstrap: str, topic: str) -> list[tuple[float, bytes, int]]:
    """Every PersonaEvent on ``topic`` as (record timestamp in s, session key, events_seen)."""
    consumer = _consumer(bootstrap)
    await consumer.start()
    points: list[tuple[float, bytes, int]] = []
    try:
        partitions = await assign_all(consumer, topic)
        end = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                points.extend((r.timestamp / 1000, r.key, events_seen(r.value)) for r in records)
    finally:
        await consumer.stop()
    return points


def start_pipeline(rig: Rig, conf: Settings, catalog: list[tuple[bytes, bytes]], workers: int,
                   command: Sequence[str] = CLI) -> None:
    """Topics, the page catalog and ``workers`` workers of one run (``command`` runs the CLI)."""
    rig.topics(conf)
    asyncio.run(seed_pages(conf.bootstrap, conf.pages_topic, catalog))
    for _ in range(workers):
        rig.start_worker(conf, command)


def throughput(rig: Rig, conf: Settings, catalog: list[tuple[bytes, bytes]], expected: Mapping[bytes, int],
               workers: int, advance: Advance, timeout: float = 900.0, profile: Path | None = None) -> dict:
    """Pre-loaded events through ``workers`` fresh workers: first PersonaEvent to the last visit's final one.

    With ``profile``, the first worker is sampled by py-spy into that file (see :data:`PROFILE_S`;
    ``profiled_s`` says how long it ran of them). ``workers_cpu_us_per_event`` and ``broker_cpu_us_per_event``
    are the CPU time of the workers (every thread) and of the broker from the first output seen (polled every
    second) to the end, per event."""
    total = sum(expected.values())
    started = time.monotonic()
    sampler = None
    first_worker = rig.started
    cpu: dict[str, float] = {}

    def cpu_now() -> dict[str, float]:
        """CPU seconds so far of the workers together and, if its PID is known, of the broker."""
        groups = {"workers": [process.pid for process in rig.workers.values()]}
        if rig.broker_pid:
            groups["broker"] = [rig.broker_pid]
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}

    try:
        start_pipeline(rig, conf, catalog, workers)
        sampler = (spy.start(next(iter(rig.workers.values())).pid, PROFILE_S, profile, PROFILE_DELAY_S)
                   if profile else None)
        sampled_from = time.monotonic() + PROFILE_DELAY_S
        finished = lambda points: completion(points, expected)["sessions_complete"] == len(expected)  # noqa: E731
        asyncio.run(wait_done(conf, total, finished, rig.check, advance, timeout,
                              first_output=lambda: cpu.update(cpu_now())))
        wall = time.monotonic() - started
        profiled = max(0.0, min(PROFILE_S, time.monotonic() - sampled_from))
        cpu_us = {f"{name}_cpu_us_per_event": round((seconds - cpu.get(name, 0.0)) / total * 1e6, 1)
                  for name, seconds in cpu_now().items()}
    finally:
        rig.stop_all()
        if sampler is not None:
            try:
                sampler.wait(30)
            except subprocess.TimeoutExpired:
                sampler.kill()
                sampler.wait()
    points = asyncio.run(read_outputs(conf.bootstrap, conf.personas_topic))
    result = completion(points, expected)
    if result["sessions_complete"] < result["sessions"]:
        result["diagnosis"] = diagnosis(points, expected, conf.partitions,
                                        [rig.log(index) for index in range(first_worker, rig.started)])
    sampled = {"profiled_s": round(profiled, 1)} if sampler is not None else {}
    return {"workers": workers, "partitions": conf.partitions, "wall_s_with_startup": round(wall, 1), **sampled,
            **cpu_us, **result}


def diagnosis(points: Sequence[tuple[float, bytes, int]], expected: Mapping[bytes, int], partitions: int,
              logs: Sequence[Path]) -> dict:
    """What an incomplete run leaves to go on: the events missing per partition of the events topic
    (the most any PersonaEvent of a visit reflected, against its events), and the workers' warnings."""
    seen: dict[bytes, int] = {}
    for _, key, events in points:
        seen[key] = max(seen.get(key, 0), events)
    missing: Counter = Counter()
    for key, events in expected.items():
        if seen.get(key, 0) < events:
            missing[key_hash(key) % partitions] += events - seen.get(key, 0)
    warnings = [line.strip()[:300] for path in logs if path.exists()
                for line in path.read_text(errors="replace").splitlines() if "WARNING" in line or "ERROR" in line]
    return {"missing_events_by_partition": dict(sorted(missing.items())), "worker_warnings": warnings[-20:]}


async def _await_output(conf: Settings, key: bytes, check: Callable[[], None], timeout: float) -> None:
    consumer = _consumer(conf.bootstrap)
    await consumer.start()
    try:
        await assign_all(consumer, conf.personas_topic)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            if any(r.key == key for records in batches.values() for r in records):
                return
            check()
        raise TimeoutError(f"no PersonaEvent for the warm-up visit within {timeout:.0f}s")
    finally:
        await consumer.stop()


IDLE_S = 10.0


def _broker_cpu(rig: Rig) -> float:
    return cpu_seconds(rig.broker_pid) if rig.broker_pid is not None else 0.0


def pipeline_latency(rig: Rig, conf: Settings, catalog: list[tuple[bytes, bytes]],
                     loads: Sequence[tuple[float, Sequence[Outgoing]]], advance: Advance) -> list[dict]:
    """Event -> PersonaEvent latency through one warmed-up worker, for each (rate, records) in turn, with
    the CPU time per event meanwhile: the worker's (its threads together, and each thread's by role), the
    broker's and this load generator's; and the share of a CPU the worker used while idle for
    :data:`IDLE_S` before the first load."""
    try:
        start_pipeline(rig, conf, catalog, 1)
        asyncio.run(produce(conf.bootstrap, conf.events_topic, paced([WARMUP], None)))
        asyncio.run(_await_output(conf, WARMUP.key, rig.check, timeout=180))
        (pid,) = [process.pid for process in rig.workers.values()]
        cpu = cpu_seconds(pid)
        time.sleep(IDLE_S)
        idle_share = round((cpu_seconds(pid) - cpu) / IDLE_S, 4)
        results, sent = [], Counter()
        for rate, records in loads:
            threads, broker, generator = thread_cpu_seconds(pid), _broker_cpu(rig), time.process_time()
            result = asyncio.run(offered_load(conf.bootstrap, conf.events_topic, conf.personas_topic, records,
                                              rate, events_seen, advance, base=Counter(sent)))
            per_event = 1e6 / max(len(records), 1)
            roles = spy.thread_roles(pid)  # now: thread pools start their threads on first use
            by_role: Counter[str] = Counter()
            for tid, seconds in thread_cpu_seconds(pid).items():
                by_role[roles.get(tid, "other threads")] += (seconds - threads.get(tid, 0.0)) * per_event
            result["worker_cpu_us_per_event"] = round(sum(by_role.values()), 1)
            result["worker_threads_cpu_us_per_event"] = {role: round(us, 1) for role, us in by_role.most_common()}
            result["load_generator_cpu_us_per_event"] = round((time.process_time() - generator) * per_event, 1)
            if rig.broker_pid is not None:
                result["broker_cpu_us_per_event"] = round((_broker_cpu(rig) - broker) * per_event, 1)
            results.append(result | {"worker_idle_cpu_share": idle_share})
            sent.update(r.key for r in records)
        return results
    finally:
        rig.stop_all()
