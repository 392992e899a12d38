"""The session processor without Kafka: batching, sessionization, de-duplication, dead letters."""

from __future__ import annotations

import itertools
import tracemalloc
from datetime import datetime
from unittest.mock import ANY

import orjson
import pytest

from models.features import SessionState
from models.intent import IntentModel
from models.persona import PersonaModel
from models.training.uci import sessions
from schemas.persona import PersonaEvent
from stream.pages import MIN_VIEWS, PageTable, observed_stats, page_record
from stream.persona_sync import SharedPersona
from stream.scoring import Scorer
from stream.sessions import Record, SessionProcessor, VisitIndex
from stream.tools.offline import score_uci


@pytest.fixture(scope="module")
def intent():
    return IntentModel.load()


def processor(intent, gap_s: float = 1800.0, **scoring) -> SessionProcessor:
    scorer = Scorer(intent, SharedPersona(PersonaModel.default()), **scoring)
    return SessionProcessor(scorer=scorer, pages=PageTable(intent.page_prior), gap_s=gap_s)


OFFSETS = itertools.count()
"""Offsets keep growing across a test module, as on a real partition."""


def records(events: list[dict], partition: int = 0) -> list[Record]:
    return [Record(e["session_id"].encode(), orjson.dumps(e), "t", partition, next(OFFSETS)) for e in events]


def visit(sid: str, start_minute: int, n: int, hour: int = 10) -> list[dict]:
    return [{"type": "page_view", "event_id": f"{sid}-{hour}-{start_minute}-{i}", "session_id": sid,
             "ts": f"2024-05-01T{hour:02d}:{start_minute + i:02d}:00Z", "page": {"id": f"p{i}", "type": "product"}}
            for i in range(n)]


def run(proc: SessionProcessor, recs: list[Record], states: dict):
    result = proc.process(recs, states)
    states.update({key: blob for key, (_, blob) in result.states.items()})
    return result


def test_faust_messages_are_processed_as_they_are(intent):
    """The session agent hands Faust's messages (faust-streaming 0.15.3) to the processor uncopied:
    they give the same outputs and states as :class:`Record` copies of them."""
    from faust.types import TP, Message

    events = visit("m1", 0, 3) + [{"type": "click", "event_id": "bad", "session_id": "m1"}]  # no ts: a dead letter
    copies = records(events, partition=2)
    messages = [Message(r.topic, r.partition, r.offset, 0.0, 0, None, key=r.key, value=r.value, checksum=None,
                        tp=TP(r.topic, r.partition)) for r in copies]
    by_record, by_message = processor(intent).process(copies, {}), processor(intent).process(messages, {})
    assert by_message.states == by_record.states and list(by_message.personas) == [b"m1"]
    assert [(d.partition, d.offset, d.reason) for d in by_message.dead_letters] == \
        [(d.partition, d.offset, d.reason) for d in by_record.dead_letters] == [(2, copies[-1].offset, ANY)]


def test_batches_of_any_size_give_the_same_final_score(intent, sample_frame):
    frame = sample_frame.head(15)
    offline = score_uci(frame, intent)
    for size in (1, 7, 100):
        proc, states, latest = processor(intent, top_features=0), {}, {}
        for index, session in enumerate(sessions(frame)):
            for stats in session.pages:
                proc.pages.apply(*page_record(stats))
            recs = records(session.events, partition=index)  # each its own clock: the rows' dates are not in order
            for start in range(0, len(recs), size):
                result = proc.process(recs[start:start + size], states)
                for key, (_, blob) in result.states.items():
                    states[key] = blob
                latest.update({p.session_id: p for p in result.persona_events()})
        assert [latest[s].intent_score for s in offline.session_id] == list(offline.intent_score)


def test_inactivity_gap_starts_a_new_visit(intent):
    proc, states = processor(intent, gap_s=1800), {}
    first = proc.process(records(visit("s1", 0, 3)), states)
    for key, (_, blob) in first.states.items():
        states[key] = blob
    later = visit("s1", 0, 1)
    later[0].update(event_id="late", ts="2024-05-01T11:00:01Z")
    result = proc.process(records(later), states)
    assert result.persona_events()[-1].visit == 1 and result.persona_events()[-1].events_seen == 1
    assert result.page_observations["p2"]["exits"] == 1


def test_catalogued_pages_are_not_counted_for_page_statistics(intent):
    """The catalog's statistics of a page win over observed ones: its views, entrances, exits and bounces
    would never be used, so they are not counted; pages the catalog does not describe are."""
    proc, states = processor(intent, gap_s=1800), {}
    proc.pages.catalog.update({"p0": (0.2, 0.3, 0.0), "p2": (0.2, 0.3, 0.0)})
    first = run(proc, records(visit("cat", 0, 3)), states)
    assert first.page_observations == {"p1": {"views": 1, "entrances": 0}}
    later = visit("cat", 0, 1)
    later[0].update(event_id="cat-late", ts="2024-05-01T11:00:01Z", page={"id": "p1"})
    ended = run(proc, records(later), states)
    assert ended.closed == 1 and "p2" not in ended.page_observations  # its exit page is catalogued
    del proc.pages.catalog["p2"]
    assert proc.pages.observes("p2")


def test_duplicates_are_dropped_and_wrong_keys_dead_lettered(intent):
    events = visit("s2", 0, 2)
    recs = records(events + [events[0]])
    recs.append(Record(b"other", orjson.dumps(events[1]), "t", 0, 99))
    result = processor(intent).process(recs, {})
    assert result.duplicates == 1
    assert result.persona_events()[-1].events_seen == 2
    assert [d.reason for d in result.dead_letters] == [
        "record key must be the event's session_id (partitioning by session)"]


def test_every_touched_visit_is_published_once_per_batch(intent):
    result = processor(intent).process(records(visit("a", 0, 3) + visit("b", 0, 2)), {})
    assert sorted((p.session_id, p.events_seen) for p in result.persona_events()) == [("a", 3), ("b", 2)]
    assert all(len(p.top_features) == (0 if p.intent_band == "low" else 3) for p in result.persona_events())


def test_partition_event_time_closes_idle_visits_once_and_teaches_the_learner(intent):
    proc, states = processor(intent, gap_s=1800), {}
    served = proc.personas.serving.version
    run(proc, records(visit("a", 0, 3)), states)
    assert proc.personas.learner.learned == 0
    other = run(proc, records(visit("b", 0, 1, hour=11), partition=1), states)
    assert other.closed == 0  # another partition's clock does not close "a"
    result = run(proc, records(visit("c", 0, 1, hour=11)), states)
    assert result.closed == 1 and result.page_observations["p2"]["exits"] == 1
    assert SessionState.from_bytes(states[b"a"]).closed
    assert proc.personas.learner.learned == 1
    back = run(proc, records(visit("a", 10, 1, hour=11)), states)
    assert back.closed == 0 and back.persona_events()[-1].visit == 1 and back.persona_events()[-1].events_seen == 1
    assert proc.personas.learner.learned == 1  # a visit is learned once
    assert {p.persona_model_version for p in back.persona_events()} == {served}  # learning does not change serving


def test_workers_serve_the_same_model_after_absorbing_each_others_learning(intent, sample_frame):
    workers = [processor(intent, gap_s=60), processor(intent, gap_s=60)]
    tables: list[dict] = [{}, {}]
    for index, session in enumerate(sessions(sample_frame.head(300))):
        proc = workers[index % 2]
        for stats in session.pages:
            proc.pages.apply(*page_record(stats))
        run(proc, records(session.events), tables[index % 2])
    learned = [w.personas.learner.learned for w in workers]
    assert min(learned) > 50
    snapshots = [blob for w in workers for blob in w.personas.take_learning()]
    assert len(snapshots) == 2 and workers[0].personas.learner.learned == 0
    merged = workers[0].personas.absorb(snapshots)
    assert merged.generation == PersonaModel.default().generation + 1
    assert workers[1].personas.adopt(PersonaModel.from_bytes(merged.to_bytes()))
    assert not workers[0].personas.adopt(merged)  # already served
    twin = visit("twin", 0, 4, hour=23)
    a, b = (w.process(records(twin), {}).persona_events()[-1] for w in workers)
    assert a.persona_model_version == b.persona_model_version == merged.version
    assert (a.persona, a.persona_id, a.persona_confidence) == (b.persona, b.persona_id, b.persona_confidence)


def test_learning_on_an_old_model_is_kept_when_a_new_one_arrives(intent):
    shared = SharedPersona(PersonaModel.default())
    x = {"pages": 2.0, "dwell": 3.0, "product_share": 0.5, "intent": 0.2}
    shared.learn(x)
    newer = shared.serving.absorb([])
    assert shared.adopt(newer) and shared.serving is newer and shared.learner.learned == 0
    shared.learn(x)
    taken = [PersonaModel.from_bytes(blob) for blob in shared.take_learning()]
    assert sorted(m.learned for m in taken) == [1, 1]
    assert shared.take_learning() == []


def test_medium_and_high_intent_visits_are_explained_within_explain_delta(intent, sample_frame):
    session = next(sessions(sample_frame.iloc[[int(sample_frame["Revenue"].to_numpy().argmax())]]))
    published = {}
    for delta in (0.0, 0.05):
        proc, states = processor(intent, explain_delta=delta), {}
        for stats in session.pages:
            proc.pages.apply(*page_record(stats))
        events = []
        for record in records(session.events):
            events.extend(run(proc, [record], states).persona_events())
        published[delta] = events
        for p in events:
            if p.intent_band == "low":
                assert p.top_features == [] and p.explained_score is None
                continue
            assert len(p.top_features) == 3 and p.explained_score is not None
            assert abs(p.explained_score - p.intent_score) <= delta + 1e-12
            assert intent.band(p.explained_score) == p.intent_band
    exact = [p for p in published[0.0] if p.intent_band != "low"]
    assert exact and all(p.explained_score == p.intent_score for p in exact)
    lazy = [p for p in published[0.05] if p.intent_band != "low"]
    assert 1 < len({p.explained_score for p in lazy}) < len({p.explained_score for p in exact})
    assert [p.intent_score for p in published[0.05]] == [p.intent_score for p in published[0.0]]


def test_records_read_again_are_not_folded_twice(intent):
    proc, states = processor(intent), {}
    first = records(visit("r", 0, 4))
    run(proc, first[:3], states)
    again = run(proc, first, states)  # a restart from an older committed offset re-reads 0..2
    assert again.duplicates == 3 and again.persona_events()[-1].events_seen == 4
    moved = [Record(r.key, r.value, r.topic, 1, 0) for r in records(visit("r", 10, 1))]
    assert run(proc, moved, states).persona_events()[-1].events_seen == 5  # another partition's offsets: not compared


# --- no record stops the batch ---------------------------------------------------------------------


def test_a_tombstone_is_a_dead_letter_and_the_rest_of_the_batch_is_processed(intent):
    proc, states = processor(intent), {}
    good = records(visit("t1", 0, 3))
    tombstone = Record(b"t1", None, "t", 0, next(OFFSETS))
    result = run(proc, [good[0], tombstone, *good[1:]], states)
    assert [p.events_seen for p in result.persona_events()] == [3]
    assert len(result.dead_letters) == 1 and result.dead_letters[0].offset == tombstone.offset


def test_an_unexpected_failure_of_one_record_is_its_dead_letter_with_the_exception_class(intent, monkeypatch):
    import stream.sessions as sessions_module

    real_fold = sessions_module.fold

    def fold(state, event, pages):
        if event.page.id == "p1":
            raise ZeroDivisionError("boom")
        real_fold(state, event, pages)

    monkeypatch.setattr(sessions_module, "fold", fold)
    result = run(processor(intent), records(visit("u1", 0, 3) + visit("u2", 0, 1)), {})
    assert [letter.reason for letter in result.dead_letters] == ["unexpected ZeroDivisionError: boom"]
    assert sorted((p.session_id, p.events_seen) for p in result.persona_events()) == [("u1", 2), ("u2", 1)]


def test_a_visit_that_cannot_be_scored_does_not_stop_the_others(intent, monkeypatch):
    proc = processor(intent)
    real_score = proc.scorer.score

    def score(visits):
        if any(key == b"bad" for key, _ in visits):
            raise ValueError("cannot score")
        return real_score(visits)

    monkeypatch.setattr(proc.scorer, "score", score)
    result = run(proc, records(visit("bad", 0, 2) + visit("good", 0, 2)), {})
    assert [p.session_id for p in result.persona_events()] == ["good"]
    assert "cannot score" in result.dead_letters[0].reason
    assert set(result.states) == {b"bad", b"good"}  # the events of the visit stay folded


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59-14:00",
                                "0001-01-01T00:00:00+14:00", 253402300799999, -62135596800001])
def test_extreme_timestamps_are_dead_letters(intent, ts):
    event = {**visit("x1", 0, 1)[0], "ts": ts}
    result = run(processor(intent), records([event] + visit("x2", 0, 1)), {})
    assert [p.session_id for p in result.persona_events()] == ["x2"] and len(result.dead_letters) == 1


def test_an_event_far_ahead_of_the_clock_is_a_dead_letter_and_does_not_end_visits(intent):
    proc, states = processor(intent, gap_s=1800), {}
    run(proc, records(visit("open", 0, 2)), states)
    future = {**visit("f", 0, 1)[0], "ts": "2099-01-01T00:00:00Z"}
    result = run(proc, records([future]), states)
    assert result.closed == 0 and "ahead of the worker's clock" in result.dead_letters[0].reason
    later = run(proc, records(visit("later", 50, 1)), states)  # 50 minutes on: "open" is idle > gap
    assert later.closed == 1


def test_an_exact_resend_far_back_in_the_visit_is_dropped(intent):
    proc, states = processor(intent), {}
    events = visit("d", 0, 40)
    run(proc, records(events), states)
    again = run(proc, records([events[1], events[20]]), states)
    assert again.duplicates == 2 and again.persona_events() == []
    assert SessionState.from_bytes(states[b"d"]).events == 40


def test_an_ended_visit_is_deleted_after_the_retention_and_a_returning_one_is_kept(intent):
    proc, states = processor(intent, gap_s=1800), {}
    proc.retain_s, proc.retain_wall_s = 1800, 0
    run(proc, records(visit("gone", 0, 2) + visit("back", 0, 2)), states)
    ended = run(proc, records(visit("tick", 40, 1)), states)  # 40 min on: both visits ended, kept
    assert ended.closed == 2 and states[b"gone"] is not None and states[b"back"] is not None
    run(proc, records(visit("back", 0, 1, hour=11)), states)  # "back" returns: a new visit, open
    later = run(proc, records(visit("tick", 45, 1, hour=11)), states)  # past gap + retention of the first visits
    assert later.states[b"gone"] == (0, None)
    assert SessionState.from_bytes(states[b"back"]).visit == 1
    last = run(proc, records(visit("tick", 5, 1, hour=12)), states)  # past gap + retention of "back"'s second visit
    assert last.states[b"back"] == (0, None)


def test_a_restarted_processor_rebuilds_its_index_from_the_table_and_ends_visits(intent):
    before, states = processor(intent, gap_s=1800), {}
    run(before, records(visit("old", 0, 2) + visit("older", 45, 1, hour=9)), states)
    after = processor(intent, gap_s=1800)
    assert after.restore_index(states.items()) == 2
    result = run(after, records(visit("new", 45, 1)), states)  # 45 minutes on: both are idle > gap
    assert result.closed == 2 and {SessionState.from_bytes(states[k]).closed for k in (b"old", b"older")} == {True}


def test_a_bot_visit_is_published_as_such_but_neither_learned_nor_counted_in_page_statistics(intent):
    proc, states = processor(intent, gap_s=1800), {}
    bot = [{**e, "bot": True} for e in visit("crawler", 0, 3)]
    first = run(proc, records(bot), states)
    assert [p.bot for p in first.persona_events()] == [True] and first.page_observations == {}
    ended = run(proc, records(visit("human", 45, 1)), states)  # 45 minutes on: the bot's visit ends
    assert ended.closed == 1 and proc.personas.learner.learned == 0
    assert "p2" not in ended.page_observations  # the bot's exit page is not counted


def test_a_resend_after_the_visit_ended_is_still_a_duplicate(intent):
    proc, states = processor(intent, gap_s=1800), {}
    events = visit("late", 0, 3)
    run(proc, records(events), states)
    assert run(proc, records(visit("tick", 45, 1)), states).closed == 1
    again = run(proc, records([events[1]]), states)
    assert again.duplicates == 1 and again.persona_events() == []
    assert SessionState.from_bytes(states[b"late"]).visit == 0


def test_every_persona_event_is_what_pydantic_writes(intent, sample_frame):
    """The scorer writes PersonaEvents with orjson: each validates and dumps back to the same bytes."""
    proc, states, written = processor(intent, explain_delta=0.0), {}, []
    proc.scorer.actions.holdout = 0.3
    for index, session in enumerate(sessions(sample_frame.head(60))):
        for stats in session.pages:
            proc.pages.apply(*page_record(stats))
        for start in range(0, len(session.events), 5):  # each row on its own partition: their dates are not in order
            written += [value for _, value in run(proc, records(session.events[start:start + 5], partition=index),
                                                  states).published()]
    times = ("2024-05-01T03:00:00Z", 1714532400.123456)
    odd = [{**e, "ts": ts, "bot": True} for e, ts in zip(visit("odd", 3, 2), times)]
    written += run(proc, records(odd), states).personas.values()
    events = [PersonaEvent.model_validate_json(raw) for raw in written]
    assert [p.model_dump_json().encode() for p in events] == written
    assert {p.intent_band for p in events} == {"low", "medium", "high"} and any(p.bot for p in events)
    assert {p.policy for p in events} == {"bandit", "holdout"} and any(len(p.top_features) == 3 for p in events)


def test_observed_page_statistics_are_published_from_the_views_a_page_table_uses():
    import doctest

    import stream.pages

    assert doctest.testmod(stream.pages).failed == 0
    counts = {"views": MIN_VIEWS - 1, "entrances": 10, "exits": 5, "bounces": 4}
    assert observed_stats("p", counts) is None
    stats = observed_stats("p", {**counts, "views": MIN_VIEWS})
    table = PageTable(prior=(0.5, 0.5, 0.0))
    table.apply(*page_record(stats))
    assert table("p") == (0.4, 5 / MIN_VIEWS, 0.0) == (stats.bounce_rate, stats.exit_rate, stats.page_value)


# --- event time: one visitor's clock cannot end or hold up the others' visits -------------------------


def at(iso: str):
    """A worker's wall clock stopped at ``iso``."""
    stopped = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return lambda: stopped


def test_an_event_dated_ahead_of_the_wall_clock_ends_no_other_visit(intent):
    proc, states = processor(intent, gap_s=1800), {}
    proc.now = at("2024-05-01T10:30:00Z")
    run(proc, records([e for i in range(100) for e in visit(f"v{i}", 20, 1)]), states)
    fast = [{**visit(f"fast{i}", 0, 1)[0], "ts": "2024-05-01T11:15:00Z"} for i in range(8)]  # 45 min ahead
    assert run(proc, records(fast), states).closed == 0
    back = run(proc, records([e for i in range(100) for e in visit(f"v{i}", 25, 1)]), states)
    assert back.closed == 0
    assert {(p.visit, p.events_seen) for p in back.persona_events()} == {(0, 2)}


def test_the_clock_runs_at_most_the_lead_ahead_of_the_wall_clock_and_with_event_time_behind_it(intent):
    proc, states = processor(intent, gap_s=1800), {}
    proc.now = at("2024-05-01T12:00:00Z")
    run(proc, records([{**visit("ahead", 0, 1)[0], "ts": "2024-05-01T12:50:00Z"}]), states)
    assert proc._clock[0] == datetime.fromisoformat("2024-05-01T12:01:00+00:00").timestamp()
    old = run(proc, records(visit("past", 0, 1, hour=9)), states)
    assert old.closed == 1  # idle for longer than the gap on the partition's clock: ended once published
    replay = processor(intent, gap_s=1800)  # historical data: the clock follows event time
    replay.now = proc.now
    run(replay, records(visit("h1", 0, 1, hour=6)), {})
    assert replay._clock[0] == datetime.fromisoformat("2024-05-01T06:00:00+00:00").timestamp()


def test_a_visit_dated_ahead_does_not_hold_up_the_ending_of_idle_visits(intent):
    """The visit ahead is the least recently touched, idle ones behind it still end by event time."""
    proc, states = processor(intent, gap_s=1800), {}
    run(proc, records([{**visit("ahead", 0, 1)[0], "ts": "2024-05-01T10:25:00Z"}]), states)
    run(proc, records(visit("idle1", 0, 1) + visit("idle2", 1, 1)), states)
    result = run(proc, records(visit("tick", 40, 1)), states)
    assert result.closed == 2 and not SessionState.from_bytes(states[b"ahead"]).closed
    assert {k for k in (b"idle1", b"idle2") if SessionState.from_bytes(states[k]).closed} == {b"idle1", b"idle2"}


def test_a_restored_clock_is_bounded_by_the_wall_clock_too(intent):
    before, states = processor(intent, gap_s=1800), {}
    before.now = at("2024-05-01T10:30:00Z")
    run(before, records(visit("open", 20, 1) + [{**visit("ahead", 0, 1)[0], "ts": "2024-05-01T11:15:00Z"}]),
        states)
    after = processor(intent, gap_s=1800)
    after.now = before.now
    after.restore_index(states.items())
    back = run(after, records(visit("open", 25, 1)), states)
    assert back.closed == 0 and back.persona_events()[-1].visit == 0


def test_the_visit_index_pops_idle_visits_oldest_first_whatever_the_touch_order():
    index = VisitIndex()
    for key, ts in ((b"late", 50.0), (b"a", 10.0), (b"b", 20.0), (b"a", 30.0)):
        index.touch(key, ts)
    assert len(index) == 3 and b"a" in index
    assert list(index.pop_idle(before=35.0)) == [(b"b", 20.0), (b"a", 30.0)]
    assert index.pop_oldest() == (b"late", 50.0) and len(index) == 0 and index.pop_oldest() is None
    for ts in range(10_000):
        index.touch(b"busy", float(ts))
    assert len(index._heap) < 100  # superseded entries are dropped, not kept per event


# --- a visit that ends within a batch -------------------------------------------------------------------


def _sequence(results) -> list[tuple[str, int, int]]:
    return [(p.session_id, p.visit, p.events_seen) for result in results for p in result.persona_events()]


def test_a_visit_ending_in_the_batch_of_the_next_one_is_published_with_its_final_state(intent):
    events = [*visit("s", 0, 1, hour=12), *visit("s", 5, 1, hour=12), *visit("s", 0, 1, hour=14)]
    for size in (1, 2, 3):
        proc, states = processor(intent, gap_s=1800), {}
        recs = records(events)
        results = [run(proc, recs[i:i + size], states) for i in range(0, len(recs), size)]
        published = _sequence(results)
        assert published[-2:] == [("s", 0, 2), ("s", 1, 1)], (size, published)
        assert sum(r.closed for r in results) == 1 and proc.personas.learner.learned == 1
        assert sum(r.page_observations.get("p0", {}).get("exits", 0) for r in results) == 1


def test_every_visit_of_a_session_ending_within_one_batch_is_published_in_order(intent):
    events = [*visit("m", 0, 2, hour=9), *visit("m", 0, 3, hour=11), *visit("m", 0, 1, hour=13)]
    proc, states = processor(intent, gap_s=1800), {}
    result = run(proc, records(events), states)
    assert _sequence([result]) == [("m", 0, 2), ("m", 1, 3), ("m", 2, 1)]
    assert list(result.personas) == [b"m"] and result.closed == 2
    assert SessionState.from_bytes(states[b"m"]).visit == 2


def test_a_batch_keeps_its_outputs_sized_to_their_content(intent):
    """A batch's PersonaEvents and states are as big as their JSON, not orjson's ~4 KB output buffer
    each: the batch holds them until delivered, and a worker keeps the memory a batch took."""
    recs = records([e for i in range(500) for e in visit(f"sized{i}", 0, 1)])
    proc = processor(intent)
    proc.process(recs[:10], {})  # caches filled
    tracemalloc.start()
    try:
        result = proc.process(recs[10:], {})
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(result.personas) == 490 and kept / 490 < 2000, f"{kept / 490:.0f} B kept per one-event visit"
