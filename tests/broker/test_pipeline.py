"""End to end through a real Kafka broker and real Faust worker processes."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from models.intent import IntentModel
from stream.tools.offline import score_uci
from stream.tools.replay import uci_records
from tests.broker.harness import latest_by_session
from tests.conftest import SAMPLE

pytestmark = pytest.mark.kafka


def expected_events(records) -> Counter:
    return Counter(r.key.decode() for r in records)


def finished(expected: Counter):
    """True once every session's newest PersonaEvent reflects all of its events."""
    def done(values: list[bytes]) -> bool:
        latest = latest_by_session(values)
        return all(sid in latest and latest[sid]["events_seen"] == n for sid, n in expected.items())
    return done


def assert_parity(latest: dict[str, dict], offline) -> None:
    assert len(offline) == len(latest)
    for row in offline.itertuples():
        streamed = latest[row.session_id]["intent_score"]
        assert abs(streamed - row.intent_score) < 1e-6, (row.session_id, streamed, row.intent_score)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_stream_scores_equal_offline_scores(pipeline, sample_frame, fraction):
    frame = sample_frame.head(120)
    _, records = uci_records(frame, fraction)
    expected = expected_events(records)
    pipeline.cli("replay-uci", str(SAMPLE), "--limit", "120", "--fraction", str(fraction), "--settle", "0")
    pipeline.start_worker()
    values = pipeline.consume_until(pipeline.topic("personas"), finished(expected))
    latest = latest_by_session(values)
    assert set(latest) == set(expected)
    for event in latest.values():
        assert 0 <= event["intent_score"] <= 1 and event["intent_band"] in {"low", "medium", "high"}
        assert event["persona"] and event["intent_model_version"].startswith("intent-")
    assert_parity(latest, score_uci(frame, IntentModel.load(), fraction=fraction))


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_restarted_worker_resumes_sessions_from_changelog(pipeline, sample_frame, store):
    pipeline.settings["PERSONASTREAM_STORE"] = store
    frame = sample_frame.head(60)
    catalog, records = uci_records(frame)
    half = len(records) // 2
    first, second = records[:half], records[half:]
    pipeline.cli("topics")
    pipeline.produce(pipeline.topic("pages"), catalog)
    pipeline.produce(pipeline.topic("events"), [(r.key, r.value) for r in first])
    worker = pipeline.start_worker()
    pipeline.consume_until(pipeline.topic("personas"), finished(expected_events(first)))
    pipeline.stop_worker(worker)
    assert worker.returncode is not None

    pipeline.produce(pipeline.topic("events"), [(r.key, r.value) for r in second])
    pipeline.start_worker()
    values = pipeline.consume_until(pipeline.topic("personas"), finished(expected_events(records)))
    assert_parity(latest_by_session(values), score_uci(frame, IntentModel.load()))


def test_bad_input_goes_to_dead_letters_and_nothing_else_is_lost(pipeline, sample_frame):
    frame = sample_frame.head(20)
    catalog, records = uci_records(frame)
    good = [(r.key, r.value) for r in records]
    valid = orjson.loads(records[0].value)
    bad = [
        (b"s-1", b"{not json"),
        (b"s-2", orjson.dumps({**valid, "session_id": "s-2", "type": "teleport"})),
        (b"s-3", orjson.dumps({**valid, "session_id": "s-3", "type": "scroll", "depth_pct": "deep"})),
        (None, orjson.dumps({k: v for k, v in valid.items() if k != "session_id"})),
        (b"s-5", orjson.dumps({**valid, "session_id": "s-5", "padding": "x" * 40_000})),
        (b"s-6", orjson.dumps({**valid, "session_id": "jane.doe@example.com"})),
    ]
    mixed = good[:10] + bad[:3] + good[10:] + bad[3:]
    pipeline.cli("topics")
    pipeline.produce(pipeline.topic("pages"), catalog)
    pipeline.produce(pipeline.topic("events"), mixed)
    pipeline.start_worker()
    values = pipeline.consume_until(pipeline.topic("personas"), finished(expected_events(records)))
    assert set(latest_by_session(values)) == {f"uci-{i}" for i in range(20)}
    letters = [orjson.loads(v) for v in pipeline.consume_until(pipeline.topic("dlq"), lambda v: len(v) >= len(bad))]
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == len(bad), reasons
    joined = " | ".join(reasons)
    for expected in ("malformed JSON", "unknown event type 'teleport'", "depth_pct", "session_id", "payload too large"):
        assert expected in joined, joined
    assert all(len(letter["payload"]) <= 1024 for letter in letters)
    assert not any("jane.doe@example.com" in letter["payload"] for letter in letters)
