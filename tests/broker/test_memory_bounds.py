"""What a worker keeps per visit and per page, through a real broker and a real worker: right-sized
table values, and page counters bounded by ``MAX_PAGE_COUNTERS``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from bench.soak import rss_bytes
from schemas.pages import PageStats
from stream.pages import page_record
from tests.broker.harness import Pipeline

pytestmark = pytest.mark.kafka

WARMUP = 5_000
VISITS = 60_000
RSS_PER_VISIT = 2750
"""Bytes of worker RSS one distinct one-event visit may add at most. The aim is 2,500: measured 2,460-2,630
with the site feature set's state fields (2,300-2,350 without them; 9,700 with unshrunk PersonaEvents)."""
CATALOGUED = [f"cat-{i}" for i in range(10)]
LIMIT = 5000
"""MAX_PAGE_COUNTERS of the page-counter test."""


def one_event_visits(first: int, n: int, page_of) -> list[tuple[bytes, bytes]]:
    """Visits ``first`` to ``first + n - 1``, of one page view each (of page ``page_of(i)``) under fresh
    session ids, dated a few minutes ago."""
    ts = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [(f"visit-{i}".encode(), orjson.dumps({
        "type": "page_view", "event_id": f"visit-{i}-0", "session_id": f"visit-{i}", "ts": ts,
        "page": {"id": page_of(i), "type": "product"}})) for i in range(first, first + n)]


def processed(pipeline: Pipeline, worker, events: int, what: str) -> None:
    pipeline.wait_for(lambda: pipeline.metric(worker, "personastream_events_total") >= events, what, timeout=240)


def rss_per_visit(pipeline: Pipeline, page_of) -> float:
    """Worker RSS added per visit over :data:`VISITS` one-event visits, after :data:`WARMUP` of them."""
    pipeline.cli("topics")
    pipeline.produce(pipeline.topic("pages"), [page_record(PageStats(page_id=page, bounce_rate=0.3, exit_rate=0.3,
                                                                     page_value=0.0)) for page in CATALOGUED])
    worker = pipeline.start_worker()
    pipeline.status(worker)
    pipeline.produce(pipeline.topic("events"), one_event_visits(0, WARMUP, page_of))
    processed(pipeline, worker, WARMUP, "the warm-up visits")
    before = rss_bytes(worker.pid)
    pipeline.produce(pipeline.topic("events"), one_event_visits(WARMUP, VISITS, page_of))
    processed(pipeline, worker, WARMUP + VISITS, "the measured visits")
    pipeline.wait_for(lambda: not sum(pipeline.lag(f"{pipeline.topic('pages')}.observations").values()),
                      "the page agent to count every observation", timeout=60)
    after = rss_bytes(worker.pid)
    per_visit = (after - before) / VISITS
    print(f"worker RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB over {VISITS} one-event visits: "
          f"{per_visit:.0f} B per visit")
    return per_visit


def test_a_distinct_visit_adds_at_most_2_75_kb_of_worker_memory(pipeline):
    per_visit = rss_per_visit(pipeline, lambda i: CATALOGUED[i % len(CATALOGUED)])
    assert per_visit <= RSS_PER_VISIT, f"{per_visit:.0f} B of worker RSS per one-event visit"


def test_page_counters_of_uncatalogued_pages_are_bounded(pipeline):
    """Every visit views a page id never seen before, every 10th the same "hot" page, the first 40 a
    "faded" page seen no more after them: at most MAX_PAGE_COUNTERS page ids per partition keep
    counters, the others' are deleted from the table (tombstones on its changelog); the hot page,
    counted recently, keeps all its views; the faded page's published statistics are deleted too.
    (A session batch brings up to 16,000 / 4 new pages a partition: a smaller bound would forget the
    hot page as well.)"""
    pipeline.settings["PERSONASTREAM_MAX_PAGE_COUNTERS"] = str(LIMIT)

    def page_of(i: int) -> str:
        return "hot" if i % 10 == 0 else "faded" if i < 40 else f"random-{i}"

    rss_per_visit(pipeline, page_of)  # printed, for the record
    (changelog,) = [t for t in pipeline.broker_topics() if pipeline.name in t and t.endswith("page-counters-changelog")]
    newest = {r.key: r.value for r in pipeline.read_records(changelog) if not r.key.startswith(b"\xff")}
    counted = {key: orjson.loads(value) for key, value in newest.items() if value is not None}
    assert len(counted) <= LIMIT * pipeline.partitions, f"{len(counted)} page ids keep counters"
    assert counted[b"hot"]["views"] == (WARMUP + VISITS) // 10 and b"faded" not in counted
    published = [r.value for r in pipeline.read_records(pipeline.topic("pages")) if r.key == b"observed/faded"]
    assert len(published) >= 2 and published[0] is not None and published[-1] is None, published
