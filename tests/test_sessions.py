"""The session processor without Kafka: batching, sessionization, de-duplication, dead letters."""

from __future__ import annotations

import orjson
import pytest

from models.intent import IntentModel
from models.persona import PersonaModel
from models.uci import sessions
from stream.offline import score_uci
from stream.pages import PageTable, page_record
from stream.sessions import Record, SessionProcessor


@pytest.fixture(scope="module")
def intent():
    return IntentModel.load()


def processor(intent, **kwargs) -> SessionProcessor:
    return SessionProcessor(intent=intent, persona=PersonaModel.default(), pages=PageTable(intent.page_prior), **kwargs)


def records(events: list[dict]) -> list[Record]:
    return [Record(e["session_id"].encode(), orjson.dumps(e), "t", 0, i) for i, e in enumerate(events)]


def visit(sid: str, start_minute: int, n: int) -> list[dict]:
    return [{"type": "page_view", "event_id": f"{sid}-{start_minute}-{i}", "session_id": sid,
             "ts": f"2024-05-01T10:{start_minute + i:02d}:00Z", "page": {"id": f"p{i}", "type": "product"}}
            for i in range(n)]


def test_batches_of_any_size_give_the_same_final_score(intent, sample_frame):
    frame = sample_frame.head(15)
    offline = score_uci(frame, intent)
    for size in (1, 7, 100):
        proc, states, latest = processor(intent, top_features=0), {}, {}
        for session in sessions(frame):
            for stats in session.pages:
                proc.pages.apply(*page_record(stats))
            recs = records(session.events)
            for start in range(0, len(recs), size):
                result = proc.process(recs[start:start + size], states)
                for key, (_, blob) in result.states.items():
                    states[key] = blob
                latest.update({p.session_id: p for p in result.personas})
        assert [latest[s].intent_score for s in offline.session_id] == list(offline.intent_score)


def test_inactivity_gap_starts_a_new_visit(intent):
    proc, states = processor(intent, gap_s=1800), {}
    first = proc.process(records(visit("s1", 0, 3)), states)
    for key, (_, blob) in first.states.items():
        states[key] = blob
    later = visit("s1", 0, 1)
    later[0].update(event_id="late", ts="2024-05-01T11:00:01Z")
    result = proc.process(records(later), states)
    assert result.personas[-1].visit == 1 and result.personas[-1].events_seen == 1
    assert result.page_observations["p2"]["exits"] == 1


def test_duplicates_are_dropped_and_wrong_keys_dead_lettered(intent):
    events = visit("s2", 0, 2)
    recs = records(events + [events[0]])
    recs.append(Record(b"other", orjson.dumps(events[1]), "t", 0, 99))
    result = processor(intent).process(recs, {})
    assert result.duplicates == 1
    assert result.personas[-1].events_seen == 2
    assert [d.reason for d in result.dead_letters] == ["record key must be the event's session_id (partitioning by session)"]


def test_every_touched_visit_is_published_once_per_batch(intent):
    result = processor(intent).process(records(visit("a", 0, 3) + visit("b", 0, 2)), {})
    assert sorted((p.session_id, p.events_seen) for p in result.personas) == [("a", 3), ("b", 2)]
    assert all(len(p.top_features) == 3 for p in result.personas)
