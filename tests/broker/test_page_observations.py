"""Page observations through a real broker and a real worker: a batch that ends tens of thousands of
visits at once still delivers their exit pages' observations."""

from __future__ import annotations

import orjson
import pytest

from tests.broker.harness import key_on_partition

pytestmark = pytest.mark.kafka

VISITS = 30_000


def page_view(sid: str, page_id: str, ts: str) -> tuple[bytes, bytes]:
    return sid.encode(), orjson.dumps({"type": "page_view", "event_id": f"{sid}-0", "session_id": sid, "ts": ts,
                                       "page": {"id": page_id, "type": "product"}})


def test_a_batch_ending_30000_visits_delivers_the_observations_of_their_exit_pages(pipeline):
    """30,000 one-event visits, each of its own 128-character page id, then a visit dated 2 hours later on
    every partition: one batch ends all 30,000, and the page agent counts every exit."""
    pipeline.cli("topics")
    visits = [page_view(f"v{i}", f"{i:x>128}", "2024-05-01T10:00:00Z") for i in range(VISITS)]
    closers = [page_view(key_on_partition("closer", p, pipeline.partitions), "closer", "2024-05-01T12:00:00Z")
               for p in range(pipeline.partitions)]
    pipeline.produce(pipeline.topic("events"), visits)
    worker = pipeline.start_worker()
    pipeline.wait_for(lambda: pipeline.metric(worker, "personastream_events_total") >= VISITS, "the visits", 180)
    pipeline.produce(pipeline.topic("events"), closers)
    pipeline.wait_for(lambda: pipeline.metric(worker, "personastream_visits_closed_total") >= VISITS,
                      "the visits to end", timeout=120)
    observations = f"{pipeline.topic('pages')}.observations"
    pipeline.wait_for(lambda: not sum(pipeline.lag(observations).values()), "the page agent to count them", 120)
    (changelog,) = [t for t in pipeline.broker_topics() if pipeline.name in t and t.endswith("page-counters-changelog")]
    newest = {r.key: r.value for r in pipeline.read_records(changelog) if not r.key.startswith(b"\xff")}
    exits = sum(orjson.loads(value).get("exits", 0) for value in newest.values() if value is not None)
    assert exits == VISITS
