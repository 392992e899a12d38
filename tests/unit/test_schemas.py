"""Event parsing, validation errors and privacy scrubbing (no Kafka)."""

from __future__ import annotations

import orjson
import pytest

from schemas import DeadLetter, EventError, PersonaEvent, parse_event
from schemas.events import MAX_EVENT_BYTES

BASE = {"event_id": "e1", "session_id": "s-abc", "ts": "2024-05-01T10:00:00Z", "page": {"id": "p1", "type": "product"}}


def raw(**fields) -> bytes:
    return orjson.dumps({**BASE, **fields})


@pytest.mark.parametrize("kind,extra", [
    ("page_view", {"referrer": "https://news.example.org/a?b=c"}), ("click", {"target": "buy"}),
    ("scroll", {"depth_pct": 55}), ("dwell", {"seconds": 15}), ("add_to_cart", {"product_id": "sku1"}),
    ("remove_from_cart", {"product_id": "sku1"}), ("search", {"query": "red shoes"}), ("purchase", {"value": 10}),
])
def test_every_event_type_parses(kind, extra):
    event = parse_event(raw(type=kind, **extra))
    assert event.type == kind and event.session_id == "s-abc" and event.ts.tzinfo is not None


def test_epoch_millis_and_iso_agree():
    a = parse_event(raw(type="click", ts=1714557600000))
    b = parse_event(raw(type="click", ts="2024-05-01T10:00:00Z"))
    assert a.ts == b.ts


@pytest.mark.parametrize("payload,reason", [
    (b"{oops", "malformed JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (raw(type="teleport"), "unknown event type 'teleport'"),
    (raw(type="scroll", depth_pct="deep"), "depth_pct"),
    (raw(type="scroll", depth_pct=140), "depth_pct"),
    (orjson.dumps({k: v for k, v in {**BASE, "type": "click"}.items() if k != "session_id"}), "session_id"),
    (raw(type="click", session_id="someone@example.com"), "session_id must be an opaque token"),
    (raw(type="click", session_id="+4915112345678"), "session_id must be an opaque token"),
    (raw(type="click", padding="x" * MAX_EVENT_BYTES), "payload too large"),
])
def test_invalid_events_say_why(payload, reason):
    with pytest.raises(EventError) as error:
        parse_event(payload)
    assert reason in error.value.reason


def test_free_text_is_scrubbed_and_personal_fields_dropped():
    event = parse_event(raw(type="search", query="call me at +1 415 555 0100 or jo@example.com",
                            page={"id": "p1", "type": "search", "path": "/u/jo@example.com/orders?token=abc#x"},
                            user_id="u-123", ip="10.0.0.1", email="jo@example.com"))
    dumped = event.model_dump_json()
    assert "jo@example.com" not in dumped and "555" not in dumped and "token" not in dumped
    assert "user_id" not in dumped and "10.0.0.1" not in dumped
    assert event.page.path == "/u/[email]/orders"
    referred = parse_event(raw(type="page_view", referrer="https://mail.example.com/inbox?u=jo@example.com"))
    assert referred.referrer == "mail.example.com"


def test_dead_letter_payload_is_truncated_and_scrubbed():
    letter = DeadLetter.for_payload(b'{"email": "jo@example.com", "x": "' + b"y" * 5000 + b'"}', reason="r",
                                    topic="t", partition=0, offset=1, received_at="2024-01-01T00:00:00Z")
    assert len(letter.payload) <= 1024 and "jo@example.com" not in letter.payload


def test_persona_event_rejects_out_of_range_scores():
    with pytest.raises(ValueError):
        PersonaEvent(session_id="s", visit=0, event_time="2024-01-01T00:00:00Z", persona="x", persona_id=0,
                     persona_confidence=0.5, intent_score=1.5, intent_band="high", intent_model_version="i",
                     persona_model_version="p", events_seen=1, page_views=1)
