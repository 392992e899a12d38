"""kill -9 of a worker in the middle of a replay: the next worker neither loses nor double-counts events."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import orjson
import pytest

from models.intent import IntentModel
from stream.kafka_io import poll_topic
from stream.tools.offline import score_uci
from stream.tools.replay import uci_records
from tests.broker.harness import last_by_session, unexact_visits
from tests.broker.test_pipeline import assert_parity, expected_events

pytestmark = pytest.mark.kafka

VISITS = 150


def test_sigkill_mid_replay_neither_loses_nor_double_counts(pipeline, sample_frame):
    frame = sample_frame.head(VISITS)
    # small batches: the replay spans many of them, so the kill lands between batches mid-replay (one batch of
    # the default size would hold every event)
    pipeline.settings["PERSONASTREAM_BATCH_SIZE"] = "200"
    catalog, records = uci_records(frame)
    expected = expected_events(records)
    pipeline.cli("topics")
    pipeline.produce(pipeline.topic("pages"), catalog)
    pipeline.produce(pipeline.topic("events"), [(r.key, r.value) for r in records])
    personas_topic = pipeline.topic("personas")

    first = pipeline.start_worker()

    async def kill_at_half() -> tuple[int, int]:
        """SIGKILL the worker as soon as half of the visits have a PersonaEvent; (visits seen, complete)."""
        newest: dict[str, int] = {}
        deadline = time.monotonic() + 90
        async with aclosing(poll_topic(pipeline.bootstrap, personas_topic, timeout_ms=20)) as polls:
            async for batch in polls:
                for value in batch:
                    event = orjson.loads(value)
                    newest[event["session_id"]] = event["events_seen"]
                if len(newest) >= VISITS // 2:
                    pipeline.kill_worker(first)
                    return len(newest), sum(newest.get(s) == n for s, n in expected.items())
                pipeline.check_workers()
                if crashes := pipeline.agent_crashes():
                    raise AssertionError("an agent crashed:\n" + "\n".join(crashes))
                if time.monotonic() > deadline:
                    raise AssertionError(f"only {len(newest)} visits scored after 90 s\n"
                                         f"{pipeline.worker_log(0)[-3000:]}\n{pipeline.diagnose(first)}")
        raise AssertionError("personas topic ended")

    seen, complete = asyncio.run(kill_at_half())
    assert first.returncode == -9, first.returncode
    # the kill must land mid-replay, or this test proves nothing
    scored_at_kill = last_by_session(pipeline.read_records(personas_topic))
    done_at_kill = sum(scored_at_kill.get(s, {}).get("events_seen") == n for s, n in expected.items())
    assert done_at_kill < len(expected), "the worker finished every visit before it was killed"
    # events the killed worker had folded and published vs. offsets it had committed: the difference is read again
    processed = sum(event["events_seen"] for event in scored_at_kill.values())
    uncommitted = sum(pipeline.lag(pipeline.topic("events")).values()) - (len(records) - processed)
    print(f"killed after {seen} visits scored ({done_at_kill} complete), {processed} of {len(records)} events "
          f"folded, {uncommitted} of them not committed (read again by the next worker)")

    second = pipeline.start_worker()

    newest = pipeline.drain(second, expected, timeout=90, lag_timeout=30)
    print("restarted worker:", end=" ")
    diagnostics = {name: pipeline.metric(second, name) for name in (
        "personastream_events_total", "personastream_duplicate_events_total", "personastream_persona_events_total",
        "personastream_offset_rewinds_total", "personastream_dead_letters_total")}

    print(diagnostics)
    wrong = unexact_visits(newest, expected)
    letters = pipeline.read_records(pipeline.topic("dlq"))
    assert not wrong, (
        f"{len(wrong)} of {len(expected)} visits whose newest PersonaEvent is not (visit 0, all its events): "
        f"{dict(list(wrong.items())[:20])} as session: (visit, events_seen, expected); killed after {seen} visits "
        f"were scored ({complete} complete); restarted worker {diagnostics}; {len(letters)} dead letters")
    assert not letters, [orjson.loads(r.value)["reason"] for r in letters][:10]
    assert_parity({sid: newest[sid] for sid in expected}, score_uci(frame, IntentModel.load()))
