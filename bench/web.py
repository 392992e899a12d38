"""Web measurements through a fresh broker: visit-lookup latency against two workers while the pipeline
runs at half of one worker's capacity, and how many events/s one worker's collector accepts into Kafka."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import aiohttp
import orjson
from aiokafka.partitioner import DefaultPartitioner

from bench import kafka, report, workload
from bench.rig import Rig, local_rig, sigterm_as_interrupt
from bench.stats import percentile
from stream.config import Settings
from stream.tools.broker import stop_process
from stream.tools.replay import Outgoing, paced, produce, seed_pages

LOOKUP_TARGET_P99_MS = 10.0
COLLECTOR_TARGET_EV_S = 20_000.0


def _status(port: int, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
                return orjson.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _owners(rig: Rig, conf: Settings, workers: Sequence[int], timeout: float = 120.0) -> dict[int, int]:
    """partition -> web port of the worker that owns it, once every partition is owned."""
    deadline = time.monotonic() + timeout
    while True:
        owners = {p: rig.web_ports[w] for w in workers for p in _status(rig.web_ports[w])["partitions"]}
        if len(owners) == conf.partitions or time.monotonic() > deadline:
            return owners
        time.sleep(1.0)


async def _lookups(ports_for: dict[bytes, tuple[int, int]], requests: int) -> tuple[list[float], int]:
    """GET /visits/{id} ``requests`` times, alternating owner and non-owner; latencies in ms (a request
    that fails or times out counts as 10 s) and how many found a PersonaEvent."""
    keys = list(ports_for)
    latencies, found = [], 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for i in range(requests):
            key = keys[i % len(keys)]
            port = ports_for[key][i % 2]
            started = time.perf_counter()
            try:
                async with http.get(f"http://127.0.0.1:{port}/visits/{key.decode()}") as response:
                    await response.read()
                    found += response.status == 200
                latencies.append((time.perf_counter() - started) * 1000)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                latencies.append(10_000.0)
    return latencies, found


def lookup_latency(rig: Rig, conf: Settings, catalog: list[tuple[bytes, bytes]], warm: Sequence[Outgoing],
                   load: Sequence[Outgoing], rate: float, requests: int = 4000) -> dict:
    """p50/p99 of the visit lookup on 2 workers (half the requests to the worker that does not own the
    session) while ``load`` is offered at ``rate`` events/s."""
    try:
        rig.topics(conf)
        asyncio.run(seed_pages(conf.bootstrap, conf.pages_topic, catalog))
        for _ in range(2):
            rig.start_worker(conf)
        workers = sorted(rig.workers)
        asyncio.run(produce(conf.bootstrap, conf.events_topic, paced(list(warm), None)))
        owners = _owners(rig, conf, workers)
        ports = sorted(rig.web_ports[w] for w in workers)
        partitioner = DefaultPartitioner()
        sessions = sorted({r.key for r in warm})
        ports_for = {}
        for key in sessions:
            owner = owners[partitioner(key, list(range(conf.partitions)), list(range(conf.partitions)))]
            ports_for[key] = (owner, next(p for p in ports if p != owner))
        time.sleep(5.0)  # the warm-up visits are scored

        async def measure() -> tuple[list[float], int, int]:  # lookups while the load is offered
            feeding = asyncio.create_task(produce(conf.bootstrap, conf.events_topic, _paced_at(load, rate)))
            latencies, found = await _lookups(ports_for, requests)
            sent = await feeding
            return latencies, found, sent

        latencies, found, sent = asyncio.run(measure())
        rig.check()
    finally:
        rig.stop_all()
    return {"workers": 2, "requests": requests, "found": found, "offered_ev_s": rate, "offered_events": sent,
            "non_owner_share": 0.5, "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2), "max_ms": round(max(latencies), 2),
            "target_p99_ms": LOOKUP_TARGET_P99_MS}


def _paced_at(records: Sequence[Outgoing], rate: float):
    """(seconds to wait before sending, record) at a steady ``rate``."""
    for record in records:
        yield 1.0 / rate, record


def _collect_bodies(batches: int, per_request: int, start_ts_ms: int) -> list[bytes]:
    bodies = []
    for b in range(batches):
        events = [{"type": "page_view", "event_id": f"c{b}x{i}", "session_id": f"col{b % 500}v{chr(97 + b % 26)}",
                   "ts": start_ts_ms + i, "page": {"id": f"p{i % 40}", "type": "product"}} for i in range(per_request)]
        bodies.append(orjson.dumps(events))
    return bodies


async def _blast(port: int, seconds: float, per_request: int, concurrency: int) -> dict:
    """POST JSON arrays of ``per_request`` events from ``concurrency`` clients for ``seconds``."""
    bodies = _collect_bodies(400, per_request, int(time.time() * 1000) - 3_600_000)
    accepted, refused = 0, 0
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/json",
               "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"}

    async def client(offset: int) -> None:
        nonlocal accepted, refused
        async with aiohttp.ClientSession() as http:
            i = offset
            while time.monotonic() < deadline:
                async with http.post(f"http://127.0.0.1:{port}/collect", data=bodies[i % len(bodies)],
                                     headers=headers) as response:
                    reply = await response.json()
                    if response.status == 202:
                        accepted += reply["accepted"]
                    else:
                        refused += 1
                i += concurrency

    started = time.monotonic()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    wall = time.monotonic() - started
    return {"events_accepted": accepted, "requests_refused": refused, "seconds": round(wall, 1),
            "events_per_s": round(accepted / wall), "events_per_request": per_request, "concurrency": concurrency,
            "target_ev_s": COLLECTOR_TARGET_EV_S}


def collector_throughput(rig: Rig, conf: Settings, seconds: float = 15.0, per_request: int = 250,
                         concurrency: int = 8) -> dict:
    """Events/s accepted into Kafka (each reply after the broker confirmed) by one worker's POST /collect
    (the worker processes them too) and by one ``personastream collector`` process (it only produces)."""
    conf = conf.model_copy(update={"collect_requests_per_s": 1e9})
    out = {}
    try:
        rig.topics(conf)
        rig.start_worker(conf)
        port = rig.web_ports[max(rig.web_ports)]
        _status(port)
        out["worker"] = asyncio.run(_blast(port, seconds, per_request, concurrency))
        rig.check()
    finally:
        rig.stop_all()
    process, port = rig.start_collector(conf)
    try:
        _wait_http(port)
        out["collector_process"] = asyncio.run(_blast(port, seconds, per_request, concurrency))
    finally:
        stop_process(process)
    return out


def _wait_http(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/tracker.js", timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def run(csv, out: Path, json_out: Path, say) -> dict:
    """Both web measurements on a fresh local broker; writes the web section of ``out`` and ``json_out``."""
    home = Path(tempfile.mkdtemp(prefix="personastream-bench-web-"))
    try:
        work = workload.build(csv, 60_000)
        with sigterm_as_interrupt(), local_rig(home) as rig:
            say("throughput of one worker (for the lookup's offered load)")
            one = rig.settings("cap", "cap.events", 4)
            rig.topics(one)
            kafka.preload(rig.bootstrap, one.events_topic, work.records, lambda n=1: None)
            capacity = kafka.throughput(rig, one, work.catalog, work.sessions(), 1, lambda n=1: None)
            rate = round(capacity["events_per_s"] / 2, -2)
            say(f"lookup latency on 2 workers at {rate:.0f} ev/s")
            lookup = lookup_latency(rig, rig.settings("lk", "lk.events", 4), work.catalog, work.records[:10_000],
                                    work.records[10_000:], rate)
            say("collector throughput")
            collector = collector_throughput(rig, rig.settings("col", "col.events", 4))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    results = {"one_worker_events_per_s": capacity["events_per_s"], "lookup": lookup, "collector": collector,
               "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    json_out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    report.replace_section(out, "<!-- web -->", "<!-- /web -->", render(results))
    return results


def render(r: dict) -> str:
    lk, col = r["lookup"], r["collector"]
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    return "\n".join([
        "## Web: visit lookup and collector (`personastream bench-web`)",
        "",
        f"Measured {r['finished_at']} on a fresh local broker; one worker alone processes "
        f"{r['one_worker_events_per_s']:,.0f} ev/s here.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| `GET /visits/{{id}}` on 2 workers, half to the non-owning worker, while {lk['offered_ev_s']:,.0f} ev/s "
        f"flow | p50 {lk['p50_ms']} ms, p99 {lk['p99_ms']} ms (max {lk['max_ms']} ms; {lk['found']}/{lk['requests']} "
        f"found) | p99 ≤ {lk['target_p99_ms']:.0f} ms — {met(lk['p99_ms'] <= lk['target_p99_ms'])} |",
        f"| `POST /collect` on a worker's web port (the worker also processes them) | "
        f"{col['worker']['events_per_s']:,} ev/s | |",
        f"| `personastream collector` process | {col['collector_process']['events_per_s']:,} ev/s "
        f"({col['collector_process']['concurrency']} clients × {col['collector_process']['events_per_request']} "
        f"events per request) | ≥ {COLLECTOR_TARGET_EV_S:,.0f} ev/s — "
        f"{met(col['collector_process']['events_per_s'] >= COLLECTOR_TARGET_EV_S)} |",
        "",
        "The lookup is answered by the worker's event loop. The session batches are processed on a thread of "
        "their own, so a request no longer waits for a whole batch. It still waits for the GIL (switch "
        "interval 1 ms) and for the work a batch does on the loop: the batch's output records, the table "
        "writes, the producer and the page agent. Those waits make the p99; p50 is the cost of the lookup "
        "itself (plus one forwarding hop for the non-owner). Side by side before this change, p99 was "
        "61 ms with the batch on the loop, 45 ms with it on a thread and 38 ms with the 1 ms switch interval. "
        "The benchmark client, the broker and the server share this machine's 2 CPUs.",
    ])
