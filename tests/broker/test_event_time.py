"""Event time through a real broker and a real worker: a visitor's fast clock ends no one else's visit
nor stalls the ending of visits, and every visit that ends gets its final PersonaEvent whatever the batching."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from tests.broker.harness import key_on_partition, last_by_session
from tests.broker.test_web import request

pytestmark = pytest.mark.kafka


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def page_view(sid: str, n: int, ts: datetime) -> dict:
    return {"type": "page_view", "event_id": f"{sid}-{n}", "session_id": sid, "ts": _iso(ts),
            "page": {"id": f"page-{n}", "type": "product"}}


def _records(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(e["session_id"].encode(), orjson.dumps(e)) for e in events]


def test_a_browser_clock_45_minutes_fast_ends_no_other_visit(pipeline):
    """100 open visits; 8 events dated 45 minutes ahead arrive through POST /collect; each of the 100
    visits then sends its second event: all 100 are still their first visit, and none ended."""
    pipeline.cli("topics")
    worker = pipeline.start_worker()
    pipeline.status(worker)
    now = datetime.now(timezone.utc)
    visitors = [f"open-{i}" for i in range(100)]
    pipeline.produce(pipeline.topic("events"), _records([page_view(sid, 0, now - timedelta(minutes=2))
                                                         for sid in visitors]))
    personas = pipeline.topic("personas")
    pipeline.consume_until(personas, pipeline.scored({sid: 1 for sid in visitors}), timeout=90)

    fast = [page_view(f"fast-{i}", 0, datetime.now(timezone.utc) + timedelta(minutes=45)) for i in range(8)]
    status, _, reply = request(worker.web_port, "/collect", b"\n".join(orjson.dumps(e) for e in fast), "text/plain")
    assert status == 202 and orjson.loads(reply)["accepted"] == 8, reply
    pipeline.consume_until(personas, pipeline.scored({e["session_id"]: 1 for e in fast}), timeout=60)

    pipeline.produce(pipeline.topic("events"), _records([page_view(sid, 1, now - timedelta(minutes=1))
                                                         for sid in visitors]))
    pipeline.consume_until(personas, pipeline.scored({sid: 2 for sid in visitors}), timeout=90)
    newest = last_by_session(pipeline.read_records(personas))
    split = sorted(sid for sid in visitors if (newest[sid]["visit"], newest[sid]["events_seen"]) != (0, 2))
    assert not split, f"{len(split)} of 100 open visits were ended by the fast clock: {split[:10]}"
    assert pipeline.metric(worker, "personastream_visits_closed_total") == 0


def test_a_visit_dated_ahead_does_not_stall_the_ending_of_idle_visits(pipeline):
    """With a 30 s gap: a visit dated 25 s ahead, then 20 visits dated now, on one partition; 36 s later
    a closer's event: the 20 visits are idle for longer than the gap and end, the visit ahead does not."""
    pipeline.settings.update({"PERSONASTREAM_SESSION_GAP_S": "30", "PERSONASTREAM_MAX_CLOCK_LEAD_S": "5"})
    pipeline.cli("topics")
    worker = pipeline.start_worker()
    pipeline.status(worker)
    start = datetime.now(timezone.utc)
    ahead = key_on_partition("ahead", 0, pipeline.partitions)
    idle = [key_on_partition(f"idle{i}", 0, pipeline.partitions) for i in range(20)]
    pipeline.produce(pipeline.topic("events"), _records([page_view(ahead, 0, start + timedelta(seconds=25))]))
    personas = pipeline.topic("personas")
    pipeline.consume_until(personas, pipeline.scored({ahead: 1}), timeout=90)
    pipeline.produce(pipeline.topic("events"), _records([page_view(sid, 0, start) for sid in idle]))
    pipeline.consume_until(personas, pipeline.scored({sid: 1 for sid in idle}), timeout=60)

    time.sleep(max(0.0, (start + timedelta(seconds=36) - datetime.now(timezone.utc)).total_seconds()))
    closer = key_on_partition("closer", 0, pipeline.partitions)
    pipeline.produce(pipeline.topic("events"), _records([page_view(closer, 0, datetime.now(timezone.utc))]))
    pipeline.consume_until(personas, pipeline.scored({closer: 1}), timeout=60)
    pipeline.wait_for(lambda: pipeline.metric(worker, "personastream_visits_closed_total") >= len(idle),
                      "the idle visits to end", timeout=20)
    closed = pipeline.metric(worker, "personastream_visits_closed_total")
    assert closed == len(idle), f"{closed:g} visits ended, expected the {len(idle)} idle ones only"


def test_a_visit_that_ends_in_the_batch_of_the_next_one_gets_its_final_persona_event(pipeline):
    """Each of 50 sessions sends events at 12:00, 12:05 and 14:00, all read in one batch: its first visit's
    final PersonaEvent (2 events) is published before its second visit's, and the lookup serves the second."""
    pipeline.cli("topics")
    noon = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    sessions = [f"twice-{i}" for i in range(50)]
    events = [page_view(sid, n, noon + offset) for sid in sessions
              for n, offset in enumerate((timedelta(0), timedelta(minutes=5), timedelta(hours=2)))]
    pipeline.produce(pipeline.topic("events"), _records(events))
    worker = pipeline.start_worker()
    personas = pipeline.topic("personas")
    pipeline.consume_until(personas, lambda values: {orjson.loads(v)["session_id"] for v in values
                                                      if orjson.loads(v)["visit"] == 1} >= set(sessions), timeout=120)
    published: dict[str, list[tuple[int, int]]] = {}
    for record in sorted(pipeline.read_records(personas), key=lambda r: (r.partition, r.offset)):
        event = orjson.loads(record.value)
        published.setdefault(event["session_id"], []).append((event["visit"], event["events_seen"]))
    wrong = {sid: seq for sid, seq in published.items() if seq[-2:] != [(0, 2), (1, 1)]}
    assert not wrong, f"{len(wrong)} of 50 sessions lack their first visit's final PersonaEvent: " \
                      f"{dict(list(wrong.items())[:5])}"
    status, _, body = request(worker.web_port, f"/visits/{sessions[0]}")
    assert status == 200 and (orjson.loads(body)["visit"], orjson.loads(body)["events_seen"]) == (1, 1)
