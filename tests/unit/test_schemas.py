"""Event parsing, validation errors and privacy scrubbing (no Kafka)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from schemas import DeadLetter, EventError, PersonaEvent, parse_event
from schemas.events import MAX_EVENT_BYTES, MAX_TS, MIN_TS

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


# -- hostile producers: parse_event raises EventError and nothing else ------------------------------------

def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE = [
    None, b"", b" ", b"\xff\xfe", b"\xff\xfe{\x00}", b"\x00", b"null", b"true", b"0", b"1e999", b"-1e999", b"NaN",
    b"Infinity", b"-Infinity", b"[]", b"{}", b'""', b'"event"', b"[1, 2]", _nested(100_000), _nested(1_000),
    b'{"a":' * 2000 + b"1" + b"}" * 2000, b"x" * (20 << 20), b"{" + b" " * (MAX_EVENT_BYTES + 1) + b"}",
    b'{"type": NaN}', b'{"type": "click", "ts": Infinity}', b'{"type": "\\ud800"}', b'{"type": "click"',
    b'{"type": "click"}{"type": "click"}', b"\xef\xbb\xbf{}",
    b'{"type": "click", "event_id": "e1", "session_id": "\xff"}',
    raw(type="scroll", depth_pct=0).replace(b'"depth_pct":0', b'"depth_pct":18446744073709551616123'),
    raw(type="click", ts=0).replace(b'"ts":0', b'"ts":-' + b"9" * 400), bytearray(raw(type=None)),
    memoryview(raw(type="nope")), "a str, not bytes", 42, 4.2, object(), [b"{}"],
]


@pytest.mark.parametrize("payload", HOSTILE, ids=[repr(p)[:40] for p in HOSTILE])
def test_hostile_payloads_raise_only_event_error(payload):
    with pytest.raises(EventError) as error:
        parse_event(payload)
    assert error.value.reason and len(error.value.reason) < 400


def test_tombstone_says_so():
    with pytest.raises(EventError, match="None"):
        parse_event(None)


WRONG_VALUES = [None, True, False, 0, -1, 1.5, 1e308, 2 ** 63, "", "x", "x" * 5000, [], [1], {}, {"a": {"b": [1]}},
                "\x00", "\ufffd"]
FIELDS = ["type", "event_id", "session_id", "ts", "page", "device", "traffic_source", "visitor_type", "region"]
TYPED_FIELDS = {"page_view": ["referrer"], "click": ["target"], "scroll": ["depth_pct"], "dwell": ["seconds"],
                "add_to_cart": ["product_id", "quantity", "price"], "remove_from_cart": ["product_id", "quantity"],
                "search": ["query"], "purchase": ["value", "currency"]}
VALID_EXTRA = {"scroll": {"depth_pct": 5}, "dwell": {"seconds": 5}, "add_to_cart": {"product_id": "sku1"},
               "remove_from_cart": {"product_id": "sku1"}}


@pytest.mark.parametrize("kind", list(TYPED_FIELDS))
@pytest.mark.parametrize("value", WRONG_VALUES, ids=[repr(v)[:20] for v in WRONG_VALUES])
def test_wrong_types_everywhere_give_an_event_or_an_event_error(kind, value):
    base = {**BASE, "type": kind, "device": {"os": "os1"}, **VALID_EXTRA.get(kind, {})}
    for name in FIELDS + TYPED_FIELDS[kind] + ["page.id", "page.type", "page.path", "device.os", "device.screen",
                                               "device.device_class"]:
        data = orjson.loads(orjson.dumps(base))
        where, _, key = name.rpartition(".")
        (data[where] if where else data)[key] = value
        try:
            parse_event(orjson.dumps(data))
        except EventError as error:
            assert error.reason


@pytest.mark.parametrize("field,value", [
    ("depth_pct", True), ("depth_pct", "55"), ("depth_pct", 1e308), ("depth_pct", -0.1), ("seconds", False),
    ("seconds", 3600.01), ("quantity", True), ("quantity", 2.0), ("quantity", "2"), ("price", True), ("price", 1e300),
    ("price", -1), ("value", 1e300), ("value", False),
])
def test_numbers_are_real_finite_and_bounded(field, value):
    kind = {"depth_pct": "scroll", "seconds": "dwell", "quantity": "add_to_cart", "price": "add_to_cart",
            "value": "purchase"}[field]
    with pytest.raises(EventError) as error:
        parse_event(raw(**{**VALID_EXTRA.get(kind, {}), "type": kind, field: value}))
    assert field in error.value.reason


BAD_TS = [
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z", "1999-12-31T23:59:59.999999Z", "2100-01-01T00:00:00Z", "2099-12-31T23:59:59-00:01",
    "2000-01-01T00:00:00+00:01", "2100-01-01T00:00:00", "2024-13-01T00:00:00Z", "2024-05-01T24:00:01Z",
    "2024-05-01T10:00:00+24:00", "2024-05-01T10:00:60Z", "", "now", "yesterday", "2024", "1e999", "NaN", "inf",
    "-1", "9" * 5000, 10 ** 30, -(10 ** 30), 2 ** 63, -1, 0, 946684799999, 4102444800000, 1e308, -1e308,
    True, False, None, [], {}, {"$date": 1714557600000},
]


@pytest.mark.parametrize("ts", BAD_TS, ids=[repr(t)[:30] for t in BAD_TS])
def test_timestamps_outside_the_safe_range_or_malformed_are_rejected(ts):
    if isinstance(ts, int) and abs(ts) >= 2 ** 63:  # beyond what orjson writes
        payload = raw(type="click", ts=0).replace(b'"ts":0', b'"ts":' + str(ts).encode())
    else:
        payload = raw(type="click", ts=ts)
    with pytest.raises(EventError) as error:
        parse_event(payload)
    assert error.value.reason.startswith("click.ts")


@pytest.mark.parametrize("ts,expected", [
    ("2000-01-01T00:00:00Z", MIN_TS), ("2099-12-31T23:59:59.999999Z", MAX_TS - timedelta(microseconds=1)),
    ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
    ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
    (946684800000, MIN_TS), (4102444799999, MAX_TS - timedelta(milliseconds=1)),
    (1714557600000.5, datetime(2024, 5, 1, 10, 0, 0, 500, tzinfo=timezone.utc)),
    ("1714557600000", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
])
def test_timestamps_in_range_are_utc(ts, expected):
    parsed = parse_event(raw(type="click", ts=ts)).ts
    assert parsed == expected and parsed.utcoffset() == timedelta(0)
    datetime.fromtimestamp(parsed.timestamp(), timezone.utc)  # what the stream does with it never overflows


def test_unknown_type_is_echoed_scrubbed_and_short():
    with pytest.raises(EventError) as error:
        parse_event(raw(type="jo@example.com" + "x" * 100))
    assert "example" not in error.value.reason and "[email]" in error.value.reason
    with pytest.raises(EventError, match=r"unknown event type \(dict\)"):
        parse_event(raw(type={"a": 1}))


def test_event_schema_is_still_generated():
    from pydantic import TypeAdapter

    from schemas import Event
    schema = TypeAdapter(Event).json_schema()
    assert "Device" in schema["$defs"] and "note" in DeadLetter.model_json_schema()["properties"]


def test_fuzzed_events_parse_or_fail_cleanly_and_reparse_to_themselves():
    """Random values in random fields: an event, or an EventError that is not the safety net's."""
    import random
    rng = random.Random(11)
    values = [None, True, 0, -1, 1.5, 1e308, 2 ** 63 - 1, "", "x" * 3000, [], {}, {"id": "p"}, "\x00", "\ufffd",
              "2024-05-01T10:00:00Z", 1714557600000, "[ip]", "http://[::1", "//a@b", "::", "%", "\\", "&#", "(at)",
              "jo@example.com", "203.0.113.9:443", "2001:db8::1", "4111 1111 1111 1111", "+1 (415) 555 0172",
              "red shoes", "/category/shoes", "Chrome 120.0.0.0", "EUR"]
    fields = ["type", "event_id", "session_id", "ts", "page", "page.id", "page.type", "page.path", "device",
              "device.os", "device.browser", "device.screen", "device.device_class", "traffic_source",
              "visitor_type", "region", "referrer", "target", "depth_pct", "seconds", "product_id", "quantity",
              "price", "query", "value", "currency"]
    parsed = 0
    for i in range(5000):
        data = {**BASE, "type": rng.choice(EVENT_KINDS), "event_id": f"e{i}", "device": {"os": "os1"},
                "depth_pct": 5, "seconds": 5, "product_id": "sku"}
        data["page"] = dict(data["page"])
        for _ in range(rng.randint(1, 3)):
            where, _, key = rng.choice(fields).rpartition(".")
            target = data.get(where) if where else data
            if isinstance(target, dict):
                target[key] = rng.choice(values)
        try:
            event = parse_event(orjson.dumps(data))
        except EventError as error:
            assert "unexpected" not in error.reason, (error.reason, data)
            continue
        parsed += 1
        assert parse_event(event.model_dump_json().encode()) == event
    assert 1000 < parsed < 4000


EVENT_KINDS = ["page_view", "click", "scroll", "dwell", "add_to_cart", "remove_from_cart", "search", "purchase"]
