"""The live dashboard: ``/dashboard`` (a static page) and ``/dashboard.json``, on every worker's web port.

It reads only what the pipeline already publishes: the PersonaEvents topic (persona mix, intent bands
and action decisions over the last :data:`WINDOW_S`), the shared action posteriors the worker serves
(from the compacted model topic: conversion, posterior mean and 95% interval per persona × band ×
action, bandit vs holdout lift) and topic offsets (events/s, dead letters/s, the app's consumer lag).
The topic reader starts with the first request, so a worker nobody watches pays nothing for it.
:class:`Dashboard` is the pure aggregation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from scipy import special

from stream.app import app, runtime, settings
from stream.kafka_io import assign_all

if TYPE_CHECKING:
    from models.actions import ActionCatalog
    from models.bandit import BetaBandit

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "dashboard" / "index.html"
WINDOW_S = 300.0
BUCKET_S = 10.0
MAX_DECISIONS = 200_000
"""Decision ids remembered to count each decision once (the oldest are forgotten beyond it)."""


class Dashboard:
    """What ``/dashboard.json`` shows (pure: the Kafka reading is :func:`follow`).

    >>> board = Dashboard(window_s=60)
    >>> board.observe(100.0, {"persona": "Bouncer", "intent_band": "low", "decision_id": "d1",
    ...                       "action_id": "simplify", "policy": "bandit"})
    >>> board.sample(100.0, events=1000, dead_letters=4, lag=12)
    >>> board.sample(110.0, events=1500, dead_letters=6, lag=3)
    >>> from models.bandit import BetaBandit
    >>> view = board.snapshot(110.0, BetaBandit())
    >>> view["personas"][0]["persona"], view["throughput"]["events_per_s"], view["throughput"]["consumer_lag"]
    ('Bouncer', 50.0, 3)
    """

    def __init__(self, window_s: float = WINDOW_S, catalog: ActionCatalog | None = None) -> None:
        self.window_s = window_s
        self.catalog = catalog
        self._buckets: deque[tuple[int, Counter, Counter]] = deque()
        """(bucket number, (persona, band) -> PersonaEvents, (persona, band, action, policy) -> new decisions)."""
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._samples: deque[tuple[float, int, int, int]] = deque()
        """(time, events topic end, dead-letter topic end, consumer lag)."""

    def observe(self, ts: float, event: Mapping[str, Any]) -> None:
        """One PersonaEvent published at ``ts`` (epoch s)."""
        number = int(ts // BUCKET_S)
        if not self._buckets or self._buckets[-1][0] < number:
            self._buckets.append((number, Counter(), Counter()))
        bucket = next((b for b in reversed(self._buckets) if b[0] <= number), self._buckets[0])
        bucket[1][(event["persona"], event["intent_band"])] += 1
        decision = event.get("decision_id")
        if decision and decision not in self._seen:
            self._seen[decision] = None
            if len(self._seen) > MAX_DECISIONS:
                self._seen.popitem(last=False)
            bucket[2][(event["persona"], event["intent_band"], event["action_id"], event["policy"])] += 1

    def sample(self, ts: float, events: int, dead_letters: int, lag: int) -> None:
        """Offsets read at ``ts``: end of the events and dead-letter topics, the app's lag on the events."""
        self._samples.append((ts, events, dead_letters, lag))

    def _trim(self, now: float) -> None:
        while self._buckets and (self._buckets[0][0] + 1) * BUCKET_S <= now - self.window_s:
            self._buckets.popleft()
        while len(self._samples) > 2 and self._samples[1][0] <= now - 30:
            self._samples.popleft()

    def snapshot(self, now: float, bandit: BetaBandit) -> dict[str, Any]:
        """The dashboard's data at ``now`` with the shared posteriors ``bandit``."""
        self._trim(now)
        seen: Counter = Counter()
        decided: Counter = Counter()
        for _, events, decisions in self._buckets:
            seen.update(events)
            decided.update(decisions)
        total = sum(seen.values())
        personas: dict[str, Counter] = {}
        for (persona, band), n in seen.items():
            personas.setdefault(persona, Counter())[band] += n
        return {
            "window_s": self.window_s,
            "throughput": self._throughput(),
            "personas": [{"persona": p, "events": sum(b.values()), "share": sum(b.values()) / total,
                          "bands": {band: b.get(band, 0) for band in ("low", "medium", "high")}}
                         for p, b in sorted(personas.items(), key=lambda item: -sum(item[1].values()))],
            "arms": self._arms(bandit, decided),
            "lift": lift(bandit),
            "posteriors": bandit.version,
        }

    def _throughput(self) -> dict[str, float | int | None]:
        if not self._samples:
            return {"events_per_s": None, "dead_letters_per_s": None, "consumer_lag": None}
        first, last = self._samples[0], self._samples[-1]
        span = last[0] - first[0]
        return {"events_per_s": (last[1] - first[1]) / span if span > 0 else None,
                "dead_letters_per_s": (last[2] - first[2]) / span if span > 0 else None,
                "consumer_lag": last[3]}

    def _arms(self, bandit: BetaBandit, decided: Counter) -> list[dict[str, Any]]:
        arms: dict[tuple[str, str, str], dict[str, Any]] = {}
        for (persona, band, action, policy), n in decided.items():
            row = arms.setdefault((persona, band, action), {"decisions": 0, "holdout_decisions": 0})
            row["decisions" if policy == "bandit" else "holdout_decisions"] += n
        for persona, band, action, _ in bandit.counts:
            arms.setdefault((persona, band, action), {"decisions": 0, "holdout_decisions": 0})
        out = []
        for (persona, band, action), row in sorted(arms.items()):
            a, b = bandit.posterior((persona, band), action)
            s, f = a - bandit.prior[0], b - bandit.prior[1]
            out.append({"persona": persona, "band": band, "action_id": action, **row,
                        "default": self.catalog is not None and self.catalog.default(persona, band).action_id == action,
                        "rewarded": int(s + f), "purchases": int(s), "conversion": s / (s + f) if s + f else None,
                        "posterior_mean": a / (a + b),
                        "interval_95": [float(special.betaincinv(a, b, q)) for q in (0.025, 0.975)]})
        return out


def lift(bandit: BetaBandit) -> dict[str, Any]:
    """Conversion of the bandit's and the holdout's rewarded decisions, and the relative lift with a
    95% interval (delta method on the log ratio)."""
    totals = {"bandit": [0, 0], "holdout": [0, 0]}
    for (*_, policy), (s, f) in bandit.counts.items():
        totals.setdefault(policy, [0, 0])
        totals[policy][0] += s
        totals[policy][1] += f
    out: dict[str, Any] = {policy: {"decisions": s + f, "purchases": s, "rate": s / (s + f) if s + f else None}
                           for policy, (s, f) in totals.items()}
    b, h = out["bandit"], out["holdout"]
    out["lift"] = out["lift_95"] = None
    if b["purchases"] and h["purchases"]:
        ratio = b["rate"] / h["rate"]
        se = math.sqrt((1 - b["rate"]) / b["purchases"] + (1 - h["rate"]) / h["purchases"])
        out["lift"] = ratio - 1
        out["lift_95"] = [ratio * math.exp(-1.96 * se) - 1, ratio * math.exp(1.96 * se) - 1]
    return out


async def follow(board: Dashboard) -> None:
    """Feed ``board``: PersonaEvents from ``WINDOW_S`` ago on, offsets every 2 s."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    offsets = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await consumer.start()
    await offsets.start()
    await admin.start()
    try:
        partitions = await assign_all(consumer, settings.personas_topic, from_beginning=False)
        since = int((time.time() - board.window_s) * 1000)
        for tp, found in (await consumer.offsets_for_times({tp: since for tp in partitions})).items():
            if found is not None:
                consumer.seek(tp, found.offset)
        events = await assign_all(offsets, settings.events_topic, from_beginning=False)
        letters = await assign_all(offsets, settings.dlq_topic, from_beginning=False)
        sampled = 0.0
        while True:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    try:
                        board.observe(record.timestamp / 1000, orjson.loads(record.value))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
            if time.monotonic() - sampled >= 2.0:
                sampled = time.monotonic()
                ends = await offsets.end_offsets(events + letters)
                committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=events)
                lag = sum(ends[tp] - max(committed[tp].offset, 0) if tp in committed else ends[tp] for tp in events)
                board.sample(time.time(), sum(ends[tp] for tp in events), sum(ends[tp] for tp in letters), lag)
    finally:
        await consumer.stop()
        await offsets.stop()
        await admin.close()


board = Dashboard(catalog=None)
_follower: asyncio.Task | None = None


@app.page("/dashboard")
async def dashboard_page(web, request):
    return web.bytes(PAGE.read_bytes(), content_type="text/html")


@app.page("/dashboard.json")
async def dashboard_data(web, request):
    global _follower
    if _follower is None or _follower.done():
        if _follower is not None and not _follower.cancelled() and _follower.exception():
            log.warning("dashboard reader stopped: %r; restarting it", _follower.exception())
        board.catalog = runtime().processor.scorer.actions.catalog
        _follower = asyncio.ensure_future(follow(board))
    return web.json(board.snapshot(time.time(), runtime().personas.bandit))
