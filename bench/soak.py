"""`personastream soak`: one worker under a steady, never-ending stream of visits for many minutes.

A fresh local broker (:func:`bench.rig.local_rig`) and ONE worker; the page catalog is seeded,
then visits are produced at ``rate`` events/s for the warm-up plus the measured minutes. Every
``interval`` seconds the harness samples

* the worker's RSS: ``VmRSS`` of ``/proc/<pid>/status``, its descendants included;
* the lag of the worker's consumer group (its ``app_id``) on every topic it consumes: the events
  topic and the internal ``<pages>.observations`` and ``<personas>.learning`` topics — committed
  offsets from the admin client's ``list_consumer_group_offsets``, end offsets from a consumer;
* throughput: events on the events topic (produced) and ``personastream_events_total`` from the
  worker's ``/metrics`` (processed), with the other counters and ``/status``.

The workload (:class:`VisitStream`) reuses :mod:`bench.workload`: synthetic click/scroll/dwell
visits and replayed UCI rows (the first ``uci_rows`` rows, cycled), every visit under a fresh
session id, ``concurrent`` visits interleaved at a time. Event times are the wall clock at send
time, so no event is ahead of the worker's clock. To see visits *end* and their state *expire*
within minutes, the worker runs with ``PERSONASTREAM_SESSION_GAP_S=60`` and
``PERSONASTREAM_SESSION_RETAIN_S=60`` (defaults 1800 and 1800): a visit receives an event about
every ``concurrent / rate`` s (0.67 s at the defaults), lasts 16 s (synthetic) to 30 s (UCI) on
average, ends once its partition's event time passes its last event by 60 s, and its state is
deleted 60 s later (the worker also waits a minute of wall time). Visits start, run, end and are
deleted continuously, so the sessions table reaches a steady size within about 2.5 minutes.

The sessions table's size over time comes from following its changelog (keys whose newest record
is not a tombstone): what the worker's in-memory store holds.

Then the *distinct-visits phase*: ``distinct_visits`` one-event visits, each of a page id never seen
before, at once, while the visit stream goes on at ``trickle_rate`` so that event time moves on; the
phase samples until the sessions table is back to its size before the burst (retention deleted the
burst's visits) and compares the worker's RSS with its RSS before the burst. The soak's worker keeps
counters of at most ``max_page_counters`` pages per partition (10,000; the default is 50,000).

Targets: RSS growth after warm-up < 5 % and no growing lag on any
internal topic; after the distinct-visits phase, RSS within 10 % of its value before the burst. A lag
is *growing* when its least-squares rise over the measured window exceeds what the topic receives
in :data:`GROWING_S` seconds (at least :data:`GROWING_MIN` records): the consumer fell that much
further behind while the input stayed steady.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from string import ascii_lowercase
from typing import Any, Callable, Iterator

import aiohttp
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console

from bench import workload
from bench.rig import Rig, cpu_seconds, local_rig, parse_metrics, sigterm_as_interrupt
from models.training.uci import read_uci, sessions
from stream.config import Settings
from stream.pages import page_record
from stream.tools.replay import Outgoing, paced, produce, seed_pages
from stream.topics import layout, page_observations_topic, persona_learning_topic

MB = 1024 * 1024
GROWING_S = 30.0
"""A lag is growing if it rose, by the fit over the measured window, by more than this many seconds
of the topic's input."""
GROWING_MIN = 10
"""... and by at least this many records (the learning topic receives one record per 10 s)."""
RSS_TARGET_PCT = 5.0
RETURN_TARGET_PCT = 10.0
"""The worker's RSS after the distinct-visits phase and its retention, at most this above its value before."""
BACKLOG_S = 10.0
"""The worker is *behind* while the events topic's lag exceeds this many seconds of input."""
BEGIN, END = "<!-- soak -->", "<!-- /soak -->"


@dataclass(frozen=True)
class Options:
    csv: Path
    out: Path
    json_out: Path
    png: Path
    command: str
    minutes: float = 10.0
    rate: float = 1500.0
    warmup_minutes: float = 2.0
    interval_s: float = 10.0
    drain_s: float = 30.0
    session_gap_s: float = 60.0
    session_retain_s: float = 60.0
    concurrent: int = 1000
    uci_rows: int = 1000
    uci_share: float = 0.5
    partitions: int = 4
    seed: int = 11
    keep: bool = False
    distinct_visits: int = 200_000
    trickle_rate: float = 100.0
    max_page_counters: int = 10_000
    distinct_timeout_s: float = 900.0


# --- the workload ---------------------------------------------------------------------------------

def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class VisitStream:
    """A never-ending stream of interleaved visits, each under a fresh session id, timed by the wall clock.

    ``concurrent`` visits are open at a time; each event comes from one of them at random, and a
    visit that has sent its last event is replaced by a new one: a replayed UCI row (the first
    ``uci_rows``, cycled, so the page catalog stays bounded) with probability ``uci_share``, else a
    synthetic visit of :func:`bench.workload._visit` (8-40 page views, clicks, scrolls, dwells).
    """

    def __init__(self, frame, rng: random.Random, concurrent: int = 1000, uci_share: float = 0.5) -> None:
        self.rng, self.concurrent, self.uci_share = rng, concurrent, uci_share
        self.pages = workload.synthetic_pages(rng)
        self.uci = list(sessions(frame)) if frame is not None and len(frame) else []
        self._synthetic = workload._visits(self.pages, rng)
        self._active: list[Iterator[dict]] = []
        self._uci_next = 0
        self.visits = 0
        """visits created so far."""
        self.keys = 0
        """visits whose first event was sent: session keys the worker's table gets."""
        self.events = 0

    def catalog(self) -> list[tuple[bytes, bytes]]:
        """Page records of every page a visit can show (synthetic and the cycled UCI rows)."""
        seen: dict[bytes, bytes] = {}
        for stats in self.pages:
            key, value = page_record(stats)
            seen[key] = value
        for session in self.uci:
            for stats in session.pages:
                key, value = page_record(stats)
                seen[key] = value
        return list(seen.items())

    def _visit(self) -> Iterator[dict]:
        n = self.visits
        self.visits += 1
        if self.uci and self.rng.random() < self.uci_share:
            session = self.uci[self._uci_next % len(self.uci)]
            self._uci_next += 1
            return self._renamed((dict(event) for event in session.events), f"soak-u{n}")
        return self._renamed((orjson.loads(r.value) for r in next(self._synthetic)), f"soak-s{n}")

    def _renamed(self, events: Iterator[dict], sid: str) -> Iterator[dict]:
        for seq, event in enumerate(events):
            if seq == 0:
                self.keys += 1
            event["session_id"] = sid
            event["event_id"] = f"{sid}-{seq}"
            yield event

    def next(self, now: float | None = None) -> Outgoing:
        """The next event, dated ``now`` (default: the wall clock)."""
        active = self._active
        while True:
            while len(active) < self.concurrent:
                active.append(self._visit())
            slot = self.rng.randrange(len(active))
            event = next(active[slot], None)
            if event is not None:
                break
            active[slot] = active[-1]
            active.pop()
        ts = time.time() if now is None else now
        event["ts"] = _iso(ts)
        self.events += 1
        return Outgoing(event["session_id"].encode(), orjson.dumps(event), ts)


def steady(stream: VisitStream, rate: float, until: Callable[[], bool], tick_s: float = 0.01
           ) -> Iterator[tuple[float, Outgoing]]:
    """(wait, record) pairs for :func:`stream.tools.replay.produce`: ``rate`` events/s in ticks of
    ``tick_s`` until ``until()`` says stop. Each event is dated when it is taken, just before it is sent."""
    per_tick = max(1, round(rate * tick_s))
    wait = per_tick / rate
    while not until():
        for i in range(per_tick):
            yield (wait if i == 0 else 0.0), stream.next()


# --- probes ---------------------------------------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/<pid>/task/<tid>/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return out


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants, in bytes."""
    total = 0
    for each in _descendants(pid):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if match:
            total += int(match.group(1)) * 1024
    return total


def load_average() -> float:
    """The machine's 1-minute load average: other processes share the 2 CPUs with the soak."""
    return float(Path("/proc/loadavg").read_text().split()[0])


class Probe:
    """Lag, end offsets and the worker's /metrics and /status, sampled on demand."""

    def __init__(self, conf: Settings, web_port: int, pid: int) -> None:
        self.conf, self.pid = conf, pid
        self.web = f"http://127.0.0.1:{web_port}"
        counts = {name: n for name, (n, _) in layout(conf).items()}
        self.consumed = [conf.events_topic, page_observations_topic(conf), persona_learning_topic(conf)]
        self.changelog = f"{conf.app_id}-sessions-changelog"
        others = [conf.dlq_topic, conf.personas_topic]
        self.partitions = {t: [TopicPartition(t, p) for p in range(counts[t])] for t in self.consumed + others}
        self.partitions[self.changelog] = [TopicPartition(self.changelog, p) for p in range(conf.partitions)]

    async def __aenter__(self) -> "Probe":
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.conf.bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.conf.bootstrap, group_id=None, enable_auto_commit=False)
        self.table = TableFollower(self.conf.bootstrap, self.partitions[self.changelog])
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.close()
        if self.table.started:
            await self.table.stop()
        await self.consumer.stop()
        await self.admin.close()

    async def metrics(self) -> dict[str, float]:
        async with self.http.get(f"{self.web}/metrics") as response:
            response.raise_for_status()
            return parse_metrics(await response.text())

    async def status(self) -> dict:
        async with self.http.get(f"{self.web}/status") as response:
            response.raise_for_status()
            return await response.json()

    async def end_offsets(self, topics: list[str]) -> dict[str, int]:
        tps = [tp for t in topics for tp in self.partitions[t]]
        ends = await self.consumer.end_offsets(tps)
        return {t: sum(ends[tp] for tp in self.partitions[t]) for t in topics}

    async def sample(self) -> dict[str, Any]:
        """One sample: RSS, per-topic committed/end offsets and lag, the worker's counters."""
        rss, cpu, load = rss_bytes(self.pid), cpu_seconds(self.pid), load_average()
        try:
            committed = await self.admin.list_consumer_group_offsets(self.conf.app_id)
        except KafkaError:  # the group (or its coordinator) does not exist yet
            committed = {}
        tps = [tp for t in self.partitions for tp in self.partitions[t]]
        ends = await self.consumer.end_offsets(tps)  # after the commits: lag is never negative
        lag, done, end = {}, {}, {}
        for topic in self.consumed:
            parts = self.partitions[topic]
            done[topic] = sum(max(committed[tp].offset, 0) if tp in committed else 0 for tp in parts)
            end[topic] = sum(ends[tp] for tp in parts)
            lag[topic] = sum(ends[tp] - max(committed[tp].offset, 0) if tp in committed else ends[tp] for tp in parts)
        for topic in self.partitions:
            end.setdefault(topic, sum(ends[tp] for tp in self.partitions[topic]))
        try:
            metrics, status = await self.metrics(), await self.status()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            metrics, status = {}, {"error": repr(exc)}
        counters = {name.removeprefix("personastream_").removesuffix("_total"): value
                    for name, value in metrics.items() if name.startswith("personastream_") and name.endswith("_total")}
        if self.table.started:
            await self.table.catch_up()
        return {"rss_bytes": rss, "worker_cpu_s": cpu, "load_1m": load, "lag": lag, "committed": done, "end": end,
                "counters": counters,
                "table_keys": len(self.table.live), "table_deleted": self.table.tombstones,
                "table_blob_bytes": sum(self.table.live.values()),
                "process_rss_bytes": metrics.get("process_resident_memory_bytes"),
                "pages_observed": (status.get("pages") or {}).get("observed"),
                "persona_learned_pending": status.get("persona_learned_pending")}


# --- the run --------------------------------------------------------------------------------------

async def _wait_ready(probe: Probe, conf: Settings, stream: VisitStream, check: Callable[[], None],
                      timeout: float = 240.0) -> float:
    """Send one event and wait until the worker has processed it; return the seconds it took."""
    started = time.monotonic()
    await produce(conf.bootstrap, conf.events_topic, paced([stream.next()], None))
    while time.monotonic() - started < timeout:
        check()
        try:
            if (await probe.metrics()).get("personastream_events_total", 0) >= 1:
                return time.monotonic() - started
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(1.0)
    raise TimeoutError(f"the worker processed no event within {timeout:.0f}s")


async def _soak(opts: Options, conf: Settings, rig: Rig, stream: VisitStream, say: Callable[[str], None]) -> dict:
    pid = rig.workers[0].pid
    async with Probe(conf, rig.web_ports[0], pid) as probe:
        ready_s = await _wait_ready(probe, conf, stream, rig.check)
        await probe.table.start()
        say(f"worker pid {pid} ready after {ready_s:.0f} s; producing {opts.rate:.0f} ev/s for "
            f"{opts.warmup_minutes:g} + {opts.minutes:g} min")
        warmup_s, produce_s = opts.warmup_minutes * 60, (opts.warmup_minutes + opts.minutes) * 60
        base_events = stream.events
        t0 = time.monotonic()
        producer = asyncio.create_task(produce(conf.bootstrap, conf.events_topic,
                                               steady(stream, opts.rate, lambda: time.monotonic() - t0 >= produce_s)))
        samples: list[dict] = []
        try:
            tick = 0
            while True:
                due = t0 + tick * opts.interval_s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                t, nominal = time.monotonic() - t0, tick * opts.interval_s
                if nominal > produce_s + opts.drain_s:
                    break
                rig.check()
                if producer.done() and producer.exception() is not None:
                    raise producer.exception()
                sample = await probe.sample()
                phase = "warmup" if nominal < warmup_s else "steady" if nominal <= produce_s else "drain"
                sample.update(t_s=round(t, 2), phase=phase, generated=stream.events - base_events,
                              session_keys=stream.keys, visits_created=stream.visits)
                samples.append(sample)
                if tick % 6 == 0:
                    say(f"{t / 60:5.1f} min  RSS {sample['rss_bytes'] / MB:7.1f} MB  processed "
                        f"{sample['counters'].get('events', 0):>10,.0f}  lag "
                        + "  ".join(f"{k.split('.')[-1]}={v:,}" for k, v in sample["lag"].items()))
                tick += 1
            sent = await producer
        finally:
            if not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
        distinct = await _distinct_phase(opts, conf, rig, probe, stream, say) if opts.distinct_visits else None
        await probe.table.catch_up(timeout_s=60.0)
        changelog = {"records": probe.table.records, "tombstones": probe.table.tombstones,
                     "keys_ever": len(probe.table.seen), "live_keys": len(probe.table.live)}
    return {"ready_s": round(ready_s, 1), "produce_s": produce_s, "samples": samples, "sent": sent,
            "changelog": changelog, "distinct": distinct,
            "consumed_topics": probe.consumed, "changelog_topic": probe.changelog}


def distinct_burst(n: int, rng: random.Random, ts: float) -> list[Outgoing]:
    """``n`` one-event visits under fresh session ids, each a view of a page id never seen before, dated ``ts``
    (letters only: digits could read as a phone or card number, which the privacy rules scrub)."""
    out = []
    for i in range(n):
        sid = f"soak-d{i}"
        event = {"type": "page_view", "event_id": f"{sid}-0", "session_id": sid, "ts": _iso(ts),
                 "page": {"id": "new-" + "".join(rng.choices(ascii_lowercase, k=14)), "type": "product"}}
        out.append(Outgoing(sid.encode(), orjson.dumps(event), ts))
    return out


async def _distinct_phase(opts: Options, conf: Settings, rig: Rig, probe: Probe, stream: VisitStream,
                          say: Callable[[str], None]) -> dict:
    """The distinct-visits phase: the burst, then the stream at the trickle rate until the sessions table
    is back to its size before the burst; RSS and table keys sampled every ``interval_s``."""
    before = await probe.sample()
    burst = distinct_burst(opts.distinct_visits, random.Random(opts.seed), time.time())
    say(f"distinct-visits phase: RSS {before['rss_bytes'] / MB:.1f} MB, {before['table_keys']:,} session keys; "
        f"sending {len(burst):,} one-event visits of new pages")
    t0 = time.monotonic()
    trickling = True
    sender = asyncio.create_task(produce(conf.bootstrap, conf.events_topic, chain(
        paced(burst, None), steady(stream, opts.trickle_rate, lambda: not trickling))))
    samples = []
    try:
        while time.monotonic() - t0 < opts.distinct_timeout_s:
            await asyncio.sleep(opts.interval_s)
            rig.check()
            if sender.done() and sender.exception() is not None:
                raise sender.exception()
            sample = await probe.sample()
            sample.update(t_s=round(time.monotonic() - t0, 2))
            samples.append(sample)
            say(f"{sample['t_s'] / 60:5.1f} min  RSS {sample['rss_bytes'] / MB:7.1f} MB  session keys "
                f"{sample['table_keys']:>9,}  deleted {sample['table_deleted']:>9,}")
            burst_done = sample["counters"].get("events", 0) >= before["counters"].get("events", 0) + len(burst)
            if burst_done and sample["table_keys"] <= before["table_keys"]:
                break
    finally:
        trickling = False
        await asyncio.gather(sender, return_exceptions=True)
    after, peak = samples[-1], max(s["rss_bytes"] for s in samples)
    returned = (after["rss_bytes"] - before["rss_bytes"]) / before["rss_bytes"] * 100
    return {"visits": len(burst), "rss_before_mb": round(before["rss_bytes"] / MB, 1),
            "rss_peak_mb": round(peak / MB, 1), "rss_after_mb": round(after["rss_bytes"] / MB, 1),
            "rss_after_pct": round(returned, 2), "keys_before": before["table_keys"],
            "keys_peak": max(s["table_keys"] for s in samples), "keys_after": after["table_keys"],
            "seconds": samples[-1]["t_s"], "retained": after["table_keys"] <= before["table_keys"],
            "samples": [{k: s[k] for k in ("t_s", "rss_bytes", "table_keys", "table_deleted")} for s in samples]}


class TableFollower:
    """The sessions table as its changelog says: keys whose newest record is not a tombstone."""

    def __init__(self, bootstrap: str, partitions: list[TopicPartition]) -> None:
        self.partitions = partitions
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         auto_offset_reset="earliest")
        self.live: dict[bytes, int] = {}
        """key -> size of its newest state blob."""
        self.seen: set[bytes] = set()
        self.records = self.tombstones = 0
        self.started = False

    async def start(self, timeout_s: float = 60.0) -> None:
        """Follow the changelog from its start, once the worker has created it."""
        await self.consumer.start()
        self.started = True
        topic = self.partitions[0].topic
        deadline = time.monotonic() + timeout_s
        while not (await self.consumer._client.fetch_all_metadata()).partitions_for_topic(topic):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not create {topic} within {timeout_s:.0f}s")
            await asyncio.sleep(1.0)
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def catch_up(self, timeout_s: float = 5.0) -> None:
        """Read the changelog up to its end offsets of now (or for ``timeout_s``)."""
        end = await self.consumer.end_offsets(self.partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and [tp for tp in self.partitions
                                               if await self.consumer.position(tp) < end[tp]]:
            for batch in (await self.consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                self.records += len(batch)
                for record in batch:
                    self.seen.add(record.key)
                    if record.value is None:
                        self.tombstones += 1
                        self.live.pop(record.key, None)
                    else:
                        self.live[record.key] = len(record.value)


def run(opts: Options, console: Console) -> dict:
    """The soak: broker, worker, load and samples; then the analysis, JSON, PNG and Markdown section."""
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="personastream-soak-"))
    ok = False
    try:
        with sigterm_as_interrupt():
            frame = read_uci(opts.csv).head(opts.uci_rows) if opts.uci_rows else None
            stream = VisitStream(frame, random.Random(opts.seed), opts.concurrent, opts.uci_share)
            with local_rig(home) as rig:
                conf = rig.settings("soak", "soak.events", opts.partitions).model_copy(
                    update={"session_gap_s": opts.session_gap_s, "session_retain_s": opts.session_retain_s,
                            "max_page_counters": opts.max_page_counters})
                rig.topics(conf)
                catalog = stream.catalog()
                asyncio.run(seed_pages(conf.bootstrap, conf.pages_topic, catalog))
                rig.start_worker(conf)
                console.print(f"broker {rig.bootstrap}, {len(catalog):,} pages seeded, worker starting "
                              f"(log {rig.log(0)})")
                raw = asyncio.run(_soak(opts, conf, rig, stream, console.print))
        ok = True
    finally:
        if ok and not opts.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            console.print(f"soak state and worker log kept in {home}")
    result = analyze(raw, opts, conf)
    result.update(command=opts.command, seconds=round(time.monotonic() - started, 1),
                  finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  machine={"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                  workload={"rate": opts.rate, "concurrent_visits": opts.concurrent, "uci_rows": opts.uci_rows,
                            "uci_share_of_visits": opts.uci_share, "catalog_pages": len(catalog),
                            "session_gap_s": opts.session_gap_s, "session_retain_s": opts.session_retain_s,
                            "partitions": opts.partitions},
                  raw={k: v for k, v in raw.items() if k != "samples"}, samples=raw["samples"])
    opts.json_out.parent.mkdir(parents=True, exist_ok=True)
    opts.json_out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    plot(result, opts.png)
    write_section(opts.out, render(result, opts))
    return result


# --- analysis -------------------------------------------------------------------------------------

def fit(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """Least-squares line y = a + b x: (b, a, r²)."""
    if len(x) < 2:
        return 0.0, (y[0] if y else 0.0), 0.0
    b, a = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    predicted = a + b * np.asarray(x, float)
    ss = float(np.sum((np.asarray(y, float) - np.mean(y)) ** 2))
    r2 = 1 - float(np.sum((np.asarray(y, float) - predicted) ** 2)) / ss if ss > 0 else 0.0
    return float(b), float(a), r2


def analyze(raw: dict, opts: Options, conf: Settings) -> dict:
    """Targets and numbers from the samples of the measured window (warm-up end to production end)."""
    samples = raw["samples"]
    post = [s for s in samples if s["phase"] == "steady"]
    if len(post) < 2:
        raise RuntimeError("fewer than two samples after the warm-up: run longer")
    first, last = post[0], post[-1]
    minutes = [s["t_s"] / 60 for s in post]
    window_min = minutes[-1] - minutes[0]
    rss = [s["rss_bytes"] / MB for s in post]
    slope, _, r2 = fit(minutes, rss)
    growth = (last["rss_bytes"] - first["rss_bytes"]) / first["rss_bytes"] * 100
    rss_summary = {"warmup_end_mb": round(rss[0], 1), "end_mb": round(rss[-1], 1),
                   "start_mb": round(samples[0]["rss_bytes"] / MB, 1), "max_mb": round(max(rss), 1),
                   "growth_pct": round(growth, 2), "slope_mb_per_min": round(slope, 3), "fit_r2": round(r2, 3),
                   "fit_growth_pct": round(slope * window_min / rss[0] * 100, 2)}
    half = len(post) // 2
    rss_summary["second_half_slope_mb_per_min"] = round(fit(minutes[half:], rss[half:])[0], 3)
    drained = [s for s in samples if s["phase"] == "drain"]
    rss_summary["after_drain_mb"] = round(drained[-1]["rss_bytes"] / MB, 1) if drained else None
    # where the RSS rose: in intervals with the events lag above BACKLOG_S of input, or not
    backlog = BACKLOG_S * opts.rate
    rises = [(b["rss_bytes"] - a["rss_bytes"]) / MB for a, b in zip(post, post[1:])]
    behind = [max(a["lag"][conf.events_topic], b["lag"][conf.events_topic]) > backlog for a, b in zip(post, post[1:])]
    rss_summary.update(rise_behind_mb=round(sum(r for r, x in zip(rises, behind) if x and r > 0), 1),
                       rise_caught_up_mb=round(sum(r for r, x in zip(rises, behind) if not x and r > 0), 1),
                       minutes_behind=round(sum(behind) * window_min / max(len(behind), 1), 1))

    lags = {}
    for topic in raw["consumed_topics"]:
        values = [s["lag"][topic] for s in post]
        b, _, lr2 = fit(minutes, values)
        input_per_s = (last["end"][topic] - first["end"][topic]) / (window_min * 60)
        threshold = max(GROWING_S * input_per_s, GROWING_MIN)
        rise = b * window_min
        drained = [s for s in samples if s["phase"] == "drain"]
        lags[topic] = {"internal": topic != conf.events_topic, "end": values[-1], "max": max(values),
                       "mean": round(float(np.mean(values)), 1), "slope_per_min": round(b, 2), "fit_r2": round(lr2, 3),
                       "fitted_rise": round(rise, 1), "input_per_s": round(input_per_s, 2),
                       "growing_threshold": round(threshold, 1), "growing": bool(rise > threshold),
                       "after_drain": drained[-1]["lag"][topic] if drained else None}

    def rate(key: Callable[[dict], float], a: dict, b: dict) -> float:
        return (key(b) - key(a)) / (b["t_s"] - a["t_s"])

    produced = lambda s: s["end"][conf.events_topic]  # noqa: E731
    processed = lambda s: s["counters"].get("events", 0)  # noqa: E731
    throughput = {"offered_rate": opts.rate,
                  "produced_per_s": round(rate(produced, first, last), 1),
                  "processed_per_s": round(rate(processed, first, last), 1),
                  "produced_events": last["end"][conf.events_topic],
                  "processed_events": int(last["counters"].get("events", 0)),
                  "processed_events_after_drain": int(samples[-1]["counters"].get("events", 0)),
                  "produced_events_total": samples[-1]["end"][conf.events_topic],
                  "worker_cpu_share": round(rate(lambda s: s["worker_cpu_s"], first, last), 3),
                  "load_1m_mean": round(float(np.mean([s["load_1m"] for s in post])), 2),
                  "load_1m_max": round(max(s["load_1m"] for s in post), 2)}
    end_counters = samples[-1]["counters"]
    dead = {"metric": int(end_counters.get("dead_letters", 0)), "dlq_records": samples[-1]["end"][conf.dlq_topic]}

    live = [s["table_keys"] for s in post]
    keys_per_min, _, _ = fit(minutes, live)
    bounded = keys_per_min * window_min <= 0.1 * max(float(np.mean(live)), 1.0)
    per_key, _, kr2 = fit(live, [s["rss_bytes"] for s in post])
    closed = int(end_counters.get("visits_closed", 0))
    table = {"keys_warmup_end": live[0], "keys_end": live[-1], "keys_max": max(live),
             "keys_per_min": round(keys_per_min, 1), "bounded": bool(bounded),
             "visits_started": samples[-1]["session_keys"], "visits_closed": closed,
             "changelog": raw["changelog"],
             "blob_bytes_mean_end": (round(last["table_blob_bytes"] / last["table_keys"], 1)
                                     if last.get("table_blob_bytes") and last["table_keys"] else None),
             # RSS per key only means something while the table grows
             "rss_bytes_per_key_fit": None if bounded else round(per_key, 1),
             "rss_vs_keys_r2": None if bounded else round(kr2, 3),
             "pages_observed_warmup_end": first.get("pages_observed"), "pages_observed_end": last.get("pages_observed")}

    internal_growing = [t for t, v in lags.items() if v["internal"] and v["growing"]]
    targets = [
        {"measure": "worker RSS growth after warm-up", "value": rss_summary["growth_pct"],
         "target": f"< {RSS_TARGET_PCT:g} %", "met": growth < RSS_TARGET_PCT},
        {"measure": "internal topics with a growing lag", "value": ", ".join(internal_growing) or "none",
         "target": "none", "met": not internal_growing},
    ]
    distinct = raw.get("distinct")
    if distinct:
        targets.append({"measure": f"worker RSS after {distinct['visits']:,} distinct visits were deleted, vs before "
                                   "them", "value": distinct["rss_after_pct"], "target": f"< {RETURN_TARGET_PCT:g} %",
                        "met": distinct["retained"] and distinct["rss_after_pct"] < RETURN_TARGET_PCT})
    return {"ready_s": raw["ready_s"], "produce_s": raw["produce_s"], "window_min": round(window_min, 2),
            "rss": rss_summary, "lag": lags, "distinct": distinct,
            "throughput": throughput, "dead_letters": dead, "sessions_table": table, "counters_end": end_counters,
            "targets": targets}


# --- outputs --------------------------------------------------------------------------------------

def plot(r: dict, png: Path) -> None:
    """RSS (and session keys), lag per topic and throughput over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = r["samples"]
    t = np.array([s["t_s"] / 60 for s in samples])
    warm = next((s["t_s"] / 60 for s in samples if s["phase"] == "steady"), 0.0)
    end = r["produce_s"] / 60
    fig, (ax_rss, ax_lag, ax_rate) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for ax in (ax_rss, ax_lag, ax_rate):
        ax.axvspan(0, warm, color="0.92", label="warm-up" if ax is ax_rss else None)
        ax.axvspan(end, t[-1], color="0.96", label="drain (no input)" if ax is ax_rss else None)
        ax.grid(alpha=0.3)
    rss = np.array([s["rss_bytes"] / MB for s in samples])
    ax_rss.plot(t, rss, color="C0", marker=".", label="worker RSS")
    steady = np.array([s["phase"] == "steady" for s in samples])
    line = np.polyfit(t[steady], rss[steady], 1)
    ax_rss.plot(t[steady], np.polyval(line, t[steady]), color="C3", ls="--",
                label=f"least squares after warm-up: {line[0]:+.2f} MB/min")
    ax_rss.set_ylabel("RSS (MB)")
    keys_ax = ax_rss.twinx()
    keys_ax.plot(t, [s["table_keys"] / 1000 for s in samples], color="C2", alpha=0.6,
                 label="sessions-table keys (changelog)")
    keys_ax.set_ylabel("sessions-table keys (thousands)", color="C2")
    lines = ax_rss.get_legend_handles_labels()[0] + keys_ax.get_legend_handles_labels()[0]
    ax_rss.legend(lines, [ln.get_label() for ln in lines], loc="lower right", fontsize=8)
    ax_rss.set_title(f"soak: {r['workload']['rate']:.0f} ev/s offered, one worker — RSS "
                     f"{r['rss']['warmup_end_mb']:.0f} → {r['rss']['end_mb']:.0f} MB ({r['rss']['growth_pct']:+.1f} %)")
    for i, topic in enumerate(r["lag"]):
        ax_lag.plot(t, [s["lag"][topic] for s in samples], marker=".", color=f"C{i}",
                    label=f"{topic} (slope {r['lag'][topic]['slope_per_min']:+.1f}/min)")
    ax_lag.set_yscale("symlog", linthresh=10)
    ax_lag.set_ylabel("consumer-group lag (records)")
    ax_lag.legend(loc="center left", fontsize=8)
    mid = (t[1:] + t[:-1]) / 2
    dt = np.diff([s["t_s"] for s in samples])
    events_topic = next(topic for topic, v in r["lag"].items() if not v["internal"])
    ax_rate.plot(mid, np.diff([s["end"][events_topic] for s in samples]) / dt, marker=".", label="produced")
    ax_rate.plot(mid, np.diff([s["counters"].get("events", 0) for s in samples]) / dt, marker=".",
                 label="processed (personastream_events_total)")
    ax_rate.set_ylabel("events/s")
    ax_rate.set_xlabel("minutes since the load started")
    load_ax = ax_rate.twinx()
    load_ax.plot(t, [s.get("load_1m", np.nan) for s in samples], color="0.5", ls=":",
                 label="machine load average (1 min)")
    load_ax.set_ylabel("load average", color="0.4")
    lines = ax_rate.get_legend_handles_labels()[0] + load_ax.get_legend_handles_labels()[0]
    ax_rate.legend(lines, [ln.get_label() for ln in lines], loc="lower left", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(r: dict, opts: Options) -> str:
    """The soak section of BENCHMARKS.md, between its markers."""
    rss, thr, table, w = r["rss"], r["throughput"], r["sessions_table"], r["workload"]
    png = os.path.relpath(opts.png, opts.out.parent)
    lines = [
        BEGIN,
        "## Soak",
        "",
        f"One run of `{r['command']}` ({r['finished_at']}, {r['machine']['cpus']} CPUs, Python "
        f"{r['machine']['python']}; {r['seconds']:.0f} s). A fresh local broker and **one** worker (memory:// store, "
        f"{w['partitions']} partitions) take {w['rate']:,.0f} events/s of never-ending visits for "
        f"{opts.warmup_minutes:g} min of warm-up plus {opts.minutes:g} measured minutes; the harness samples every "
        f"{opts.interval_s:g} s and keeps sampling {opts.drain_s:g} s after the input stops. Raw samples: "
        f"[`{opts.json_out.name}`]({opts.json_out.name}). Re-run with `make soak`; it replaces only this section.",
        "",
        f"**Workload.** `bench/soak.py` interleaves {w['concurrent_visits']:,} open visits at a time; a finished "
        f"visit is replaced by a new one under a fresh session id: a replayed UCI row (the first {w['uci_rows']:,} "
        f"rows, cycled, so the {w['catalog_pages']:,}-page catalog stays bounded) for {w['uci_share_of_visits']:.0%} "
        "of visits, else a synthetic click/scroll/dwell visit (`bench.workload`). Every event is dated with the wall "
        "clock when it is sent (never ahead of the worker's clock, which dead-letters events more than 1 h ahead). "
        f"The worker runs with `PERSONASTREAM_SESSION_GAP_S={w['session_gap_s']:g}` and "
        f"`PERSONASTREAM_SESSION_RETAIN_S={w['session_retain_s']:g}` (defaults 1800 and 1800) so that visits end and "
        f"their state is deleted within the soak: each open visit gets an event every "
        f"~{w['concurrent_visits'] / w['rate']:.2f} s, lasts 16–30 s on average, ends once its partition's event "
        "time passes its last event by the gap and is deleted (changelog tombstone) when it passes it by gap + "
        "retain and a minute of wall time has gone by since it ended. Visits start, end and are deleted "
        f"continuously: {table['visits_started']:,} visits started, {table['visits_closed']:,} ended by the gap, "
        f"{table['changelog']['tombstones']:,} states deleted.",
        "",
        "### Targets",
        "",
        _row("measure", "value", "target", "met"),
        _row("---", "---", "---", "---"),
        *[_row(t["measure"], f"{t['value']:+.2f} %" if isinstance(t["value"], float) else t["value"], t["target"],
               "yes" if t["met"] else "**no**") for t in r["targets"]],
        "",
        "A lag is *growing* when its least-squares rise over the measured window is more than "
        f"{GROWING_S:g} s of the topic's input (at least {GROWING_MIN} records).",
        "",
        "### Measurements (measured window: warm-up end to input end)",
        "",
        _row("measurement", "result"),
        _row("---", "---"),
        _row("worker RSS (VmRSS, with descendants)",
             f"{rss['start_mb']:.1f} MB when the load started, **{rss['warmup_end_mb']:.1f} MB at warm-up end, "
             f"{rss['end_mb']:.1f} MB at the end: {rss['growth_pct']:+.2f} %**; slope "
             f"**{rss['slope_mb_per_min']:+.3f} MB/min** (least squares over {r['window_min']:.1f} min, "
             f"r² {rss['fit_r2']:.2f}; {rss['fit_growth_pct']:+.2f} % by the fit)"),
        *[_row(f"lag, `{topic}`" + (" (internal)" if v["internal"] else ""),
               f"end {v['end']:,} records (mean {v['mean']:,.0f}, max {v['max']:,}); slope {v['slope_per_min']:+,.1f} "
               f"records/min, fitted rise {v['fitted_rise']:+,.0f} vs threshold {v['growing_threshold']:,.0f} "
               f"({v['input_per_s']:,.1f} records/s in): **{'growing' if v['growing'] else 'not growing'}**"
               + (f"; {v['after_drain']:,} after the drain" if v["after_drain"] is not None else ""))
          for topic, v in r["lag"].items()],
        _row("throughput", f"produced {thr['produced_per_s']:,.1f} ev/s, processed {thr['processed_per_s']:,.1f} ev/s "
                           f"(offered {thr['offered_rate']:,.0f}); {thr['processed_events_after_drain']:,} of "
                           f"{thr['produced_events_total']:,} events processed after the drain; the worker used "
                           f"{thr['worker_cpu_share']:.0%} of one CPU; machine load average {thr['load_1m_mean']:.2f} "
                           f"(max {thr['load_1m_max']:.2f}) on {r['machine']['cpus']} CPUs"),
        _row("dead letters", f"{r['dead_letters']['metric']:,} (`personastream_dead_letters_total`; "
                             f"{r['dead_letters']['dlq_records']:,} records on the DLQ topic)"),
        _row("sessions-table keys (live keys of its changelog)",
             f"{table['keys_warmup_end']:,} at warm-up end, {table['keys_end']:,} at the end (max "
             f"{table['keys_max']:,}); slope {table['keys_per_min']:+,.0f} keys/min: "
             f"**{'bounded' if table['bounded'] else 'growing'}**; {table['changelog']['keys_ever']:,} keys ever "
             f"written, {table['changelog']['tombstones']:,} deleted, {table['changelog']['records']:,} "
             "changelog records"
             + (f"; state blobs of {table['blob_bytes_mean_end']:,.0f} B on average at the end"
                if table.get("blob_bytes_mean_end") else "")
             + (f"; {table['rss_bytes_per_key_fit']:,.0f} B of RSS per key (least squares, r² "
                f"{table['rss_vs_keys_r2']:.2f})" if table["rss_bytes_per_key_fit"] is not None else "")),
        _row("pages observed by the worker", f"{table['pages_observed_warmup_end']} at warm-up end, "
                                             f"{table['pages_observed_end']} at the end"),
        _row("worker start-up", f"{r['ready_s']:.0f} s from start to its first processed event"),
        *([_row("distinct-visits phase",
                f"{d['visits']:,} one-event visits of new page ids at once, the visit stream on at "
                f"{opts.trickle_rate:g} ev/s: RSS {d['rss_before_mb']:.1f} MB before, {d['rss_peak_mb']:.1f} MB at "
                f"most, **{d['rss_after_mb']:.1f} MB ({d['rss_after_pct']:+.2f} %) once the sessions table was "
                f"back to {d['keys_after']:,} keys** ({d['keys_before']:,} before, {d['keys_peak']:,} at most), "
                f"{d['seconds']:.0f} s after the burst")] if (d := r.get("distinct")) else []),
        "",
        f"![RSS, lag and throughput over the soak]({png})",
        "",
        "### Interpretation",
        "",
        *interpretation(r),
        END,
    ]
    return "\n".join(lines)


def interpretation(r: dict) -> list[str]:
    """A number-driven reading of the run: what grew, what stayed bounded, what disturbed it."""
    rss, table, thr = r["rss"], r["sessions_table"], r["throughput"]
    growing = [t for t, v in r["lag"].items() if v["growing"]]
    events = next(v for v in r["lag"].values() if not v["internal"])
    met = r["targets"][0]["met"]
    memory = (f"* **Memory.** After the warm-up RSS went from {rss['warmup_end_mb']:.1f} to {rss['end_mb']:.1f} MB "
              f"({rss['growth_pct']:+.2f} %, target < {RSS_TARGET_PCT:g} %: {'met' if met else 'not met'}); the "
              f"least-squares slope is {rss['slope_mb_per_min']:+.3f} MB/min (r² {rss['fit_r2']:.2f}; "
              f"{rss['second_half_slope_mb_per_min']:+.3f} MB/min over the second half)"
              + (f", and RSS was {rss['after_drain_mb']:.1f} MB once the backlog was drained"
                 if rss["after_drain_mb"] else "")
              + f". Of the RSS increases between samples, {rss['rise_behind_mb']:.1f} MB came while the worker was "
              f"behind (events lag above {BACKLOG_S:g} s of input, {rss['minutes_behind']:.1f} of "
              f"{r['window_min']:.0f} min) and {rss['rise_caught_up_mb']:.1f} MB while it was not, consistent with "
              "records fetched and buffered ahead of processing raising the heap's high-water mark. ")
    if table["bounded"]:
        memory += (f"The sessions table stayed bounded ({table['keys_warmup_end']:,} → {table['keys_end']:,} keys, "
                   f"max {table['keys_max']:,}): ended visits are deleted, {table['changelog']['tombstones']:,} of "
                   f"{table['changelog']['keys_ever']:,} states so far, so it holds about the visits of the last "
                   "gap + retain + visit length, not every visit ever seen.")
    else:
        per_hour = table["rss_bytes_per_key_fit"] * table["keys_per_min"] * 60 / MB
        share = per_hour / 60 / rss["slope_mb_per_min"] if rss["slope_mb_per_min"] > 0 else None
        memory += (f"The sessions table grew by {table['keys_per_min']:,.0f} keys/min ({table['keys_warmup_end']:,} → "
                   f"{table['keys_end']:,}) at {table['rss_bytes_per_key_fit']:,.0f} B of RSS per key"
                   + (f", {share:.0%} of the RSS slope" if share is not None else "")
                   + f": it keeps ended visits, {per_hour:,.0f} MB per hour at this rate.")
    contention = (f" The machine's load average was {thr['load_1m_mean']:.1f} on average (max "
                  f"{thr['load_1m_max']:.1f}) on {r['machine']['cpus']} CPUs: other processes competed with the "
                  f"broker and the worker (which used {thr['worker_cpu_share']:.0%} of one CPU)."
                  if thr["load_1m_mean"] > r["machine"]["cpus"] else "")
    lag = ("* **Lag.** " + (f"Growing: {', '.join(growing)}." if growing else "No lag grew over the window.")
           + f" The events lag peaked at {events['max']:,} records ({events['max'] / thr['offered_rate']:.0f} s of "
           f"input) and ended at {events['end']:,}; the worker processed {thr['processed_per_s']:,.0f} ev/s of "
           f"{thr['produced_per_s']:,.0f} ev/s produced over the window and {thr['processed_events_after_drain']:,} "
           f"of {thr['produced_events_total']:,} events by the end of the drain.{contention}")
    return [memory, lag]


def write_section(path: Path, section: str) -> None:
    """Replace the marked soak section of ``path`` (or append it; create the file if needed)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, stop = text.find(BEGIN), text.find(END)
    if start >= 0 and stop > start:
        text = text[:start] + section + text[stop + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
