"""Hostile input through a real broker and a real worker: nothing valid is lost or miscounted,
every invalid record becomes exactly one dead letter, and event time keeps closing visits."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from models.intent import IntentModel
from stream.tools.offline import score_uci
from stream.tools.replay import uci_records
from tests.broker.harness import key_on_partition, last_by_session, partition_of
from tests.broker.test_pipeline import assert_parity

pytestmark = pytest.mark.kafka

VISITS = 40
PARTITIONS = 4


@dataclass
class Sent:
    """One record this test produces, and what the pipeline must make of it."""

    label: str
    key: bytes | None
    value: bytes | None
    kind: str
    """valid: an event of a visit · dup: an exact re-send of one (no count, no letter) · dlq: one dead letter."""
    reason_has: str | None = None
    """for dlq: a text the dead letter's reason must contain."""
    partition: int | None = None
    offset: int | None = None


def _raw(event: dict, **replace: str) -> bytes:
    """``event`` as JSON with the values of some fields replaced by raw JSON text (NaN, Infinity, …)."""
    marked = {**event, **{name: f"@@{name}@@" for name in replace}}
    text = orjson.dumps(marked)
    for name, literal in replace.items():
        text = text.replace(f'"@@{name}@@"'.encode(), literal.encode())
    return text


def hostile(template: dict, other_key: bytes, tag: str, heavy: bool) -> list[Sent]:
    """Invalid records bound to the visit of ``template`` (a valid event of it, same key)."""
    sid = template["session_id"]
    key = sid.encode()
    serial = iter(range(1000))

    def event(**fields) -> dict:
        return {**template, "event_id": f"h-{tag}-{next(serial)}", **fields}

    valid = orjson.dumps(event())
    out = [
        Sent("tombstone (value None)", key, None, "dlq"),
        Sent("empty value", key, b"", "dlq"),
        Sent("non-UTF-8 bytes", key, b"\xff\xfe\xfd\x80garbage\xc3\x28", "dlq"),
        Sent("non-UTF-8 inside a valid-looking event", key,
             valid.replace(template["page"]["id"].encode(), b"\xff\xfe" + template["page"]["id"].encode()), "dlq"),
        Sent("8000 nested arrays (under 16 KiB)", key, b"[" * 8000 + b"]" * 8000, "dlq"),
        Sent("600 nested objects as page", key, _raw(event(), page=_nested_object(600)), "dlq"),
        Sent("truncated JSON", key, valid[: len(valid) // 2], "dlq"),
        Sent("JSON null", key, b"null", "dlq"),
        Sent("JSON string", key, b'"page_view"', "dlq"),
        Sent("JSON number", key, b"42", "dlq"),
        Sent("event inside a list", key, orjson.dumps([event()]), "dlq"),
        # timestamps
        Sent("ts 9999-12-31T23:59:59.999999Z", key, orjson.dumps(event(ts="9999-12-31T23:59:59.999999Z")), "dlq"),
        Sent("ts 9999-12-31T23:59:59-14:00 (overflows UTC)", key,
             orjson.dumps(event(ts="9999-12-31T23:59:59-14:00")), "dlq"),
        Sent("ts 0001-01-01T00:00:00+14:00 (underflows UTC)", key,
             orjson.dumps(event(ts="0001-01-01T00:00:00+14:00")), "dlq"),
        Sent("ts epoch ms 1e20", key, orjson.dumps(event(ts=1e20)), "dlq"),
        Sent("ts epoch ms -1e20", key, orjson.dumps(event(ts=-1e20)), "dlq"),
        Sent("ts in 2090 (valid event, far future)", key, orjson.dumps(event(ts="2090-01-01T00:00:00Z")), "dlq",
             reason_has="clock"),
        Sent("ts as bool", key, orjson.dumps(event(ts=True)), "dlq"),
        Sent("ts as list", key, orjson.dumps(event(ts=[2016, 2, 1])), "dlq"),
        # NaN / Infinity literals (not JSON)
        Sent("dwell.seconds NaN literal", key, _raw(event(type="dwell"), seconds="NaN"), "dlq"),
        Sent("scroll.depth_pct Infinity literal", key, _raw(event(type="scroll"), depth_pct="Infinity"), "dlq"),
        Sent("add_to_cart.price -Infinity literal", key,
             _raw(event(type="add_to_cart", product_id="sku-1"), price="-Infinity"), "dlq"),
        # wrong types
        Sent("dwell.seconds as string '60'", key, orjson.dumps(event(type="dwell", seconds="60")), "dlq"),
        Sent("scroll.depth_pct as string '50'", key, orjson.dumps(event(type="scroll", depth_pct="50")), "dlq"),
        Sent("add_to_cart.quantity as string '2'", key,
             orjson.dumps(event(type="add_to_cart", product_id="sku-1", quantity="2")), "dlq"),
        Sent("dwell.seconds as bool true", key, orjson.dumps(event(type="dwell", seconds=True)), "dlq"),
        Sent("scroll.depth_pct as bool false", key, orjson.dumps(event(type="scroll", depth_pct=False)), "dlq"),
        Sent("add_to_cart.quantity as bool true", key,
             orjson.dumps(event(type="add_to_cart", product_id="sku-1", quantity=True)), "dlq"),
        Sent("page as list", key, orjson.dumps(event(page=[template["page"]["id"], "product"])), "dlq"),
        Sent("device as list", key, orjson.dumps(event(device=["os1", "br1"])), "dlq"),
        Sent("session_id as number", b"12345", orjson.dumps(event(session_id=12345)), "dlq"),
        Sent("event_id as number", key, orjson.dumps({**event(), "event_id": 7}), "dlq"),
        # keys
        Sent("key of another visit", other_key, orjson.dumps(event()), "dlq", reason_has="key"),
        Sent("key None", None, orjson.dumps(event()), "dlq", reason_has="key"),
        # types
        Sent("unknown type 'teleport'", key, orjson.dumps(event(type="teleport")), "dlq", reason_has="type"),
        Sent("type in capitals 'PAGE_VIEW'", key, orjson.dumps(event(type="PAGE_VIEW")), "dlq", reason_has="type"),
        Sent("type null", key, orjson.dumps(event(type=None)), "dlq", reason_has="type"),
        Sent("type as list", key, orjson.dumps(event(type=["page_view"])), "dlq", reason_has="type"),
        Sent("type missing", key, orjson.dumps({k: v for k, v in event().items() if k != "type"}), "dlq",
             reason_has="type"),
    ]
    if heavy:
        base = orjson.dumps(event(padding=""))
        out += [
            Sent("50,000 nested arrays", key, b"[" * 50_000 + b"]" * 50_000, "dlq"),
            Sent("~1 MB payload", key, orjson.dumps(event(padding="x" * (1_000_000 - len(base)))), "dlq",
                 reason_has="too large"),
        ]
    return out


def _nested_object(depth: int) -> str:
    """JSON text of a page whose id is nested ``depth`` objects deep (too deep for orjson.dumps)."""
    return '{"id":' * depth + '"deep"' + ',"type":"product"}' * depth


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_hostile_input_is_dead_lettered_and_nothing_valid_is_lost(pipeline, sample_frame):
    frame = sample_frame.head(VISITS)
    catalog, records = uci_records(frame)
    events_of: dict[str, list] = {}
    for record in records:
        events_of.setdefault(record.key.decode(), []).append(record)
    counts = {sid: len(evs) for sid, evs in events_of.items()}
    on_partition = {p: [sid for sid in counts if partition_of(sid.encode(), PARTITIONS) == p]
                    for p in range(PARTITIONS)}
    assert all(on_partition.values()), f"every partition needs a valid visit: {on_partition}"

    def template(sid: str) -> dict:
        return orjson.loads(events_of[sid][0].value)

    def other_key(sid: str) -> bytes:
        return next(s for s in counts if s != sid).encode()

    plan: list[Sent] = []
    # BEFORE any valid event: every hostile kind on every partition, keyed by a visit of that partition
    for p, sids in on_partition.items():
        plan += hostile(template(sids[0]), other_key(sids[0]), f"before-p{p}", heavy=(p == 0))

    # exact re-sends, far apart: the 2nd event of a visit again after 32 later events of that visit,
    # the 1st event again after the visit's last event, and one event sent twice in a row
    long_visits = [sid for sid, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n >= 40][:3]
    assert len(long_visits) == 3, counts
    resend_after: dict[int, list[Sent]] = {}
    for sid in long_visits:
        evs = events_of[sid]
        for original, after in ((evs[1], evs[33]), (evs[0], evs[-1]), (evs[10], evs[10])):
            resend_after.setdefault(id(after), []).append(
                Sent(f"re-send of {orjson.loads(original.value)['event_id']}", original.key, original.value, "dup"))

    # BETWEEN valid events: the hostile kinds again at a third and two thirds of the replay, each time keyed
    # by a visit of every partition that has events both before and after that point
    cut_points = {len(records) // 3: "third", 2 * len(records) // 3: "two-thirds"}
    for i, record in enumerate(records):
        if i in cut_points:
            seen_before = {r.key.decode() for r in records[:i]}
            seen_after = {r.key.decode() for r in records[i:]}
            for p, sids in on_partition.items():
                open_ones = [s for s in sids if s in seen_before and s in seen_after] or sids
                plan += hostile(template(open_ones[0]), other_key(open_ones[0]), f"{cut_points[i]}-p{p}",
                                heavy=(p == 1 and cut_points[i] == "third"))
        plan.append(Sent(f"valid {orjson.loads(record.value)['event_id']}", record.key, record.value, "valid"))
        plan += resend_after.get(id(record), [])

    # AFTER the valid visits: one more valid visit per partition, 2 hours of event time later. It moves every
    # partition's clock past the gap, so every replayed visit must be closed (exactly once) and learned from.
    last_ts = max(r.ts for r in records)
    closers = {}
    for p in range(PARTITIONS):
        sid = key_on_partition("closer", p, PARTITIONS)
        closers[sid] = 1
        event = {**template(on_partition[p][0]), "session_id": sid, "event_id": f"{sid}-0", "type": "page_view",
                 "ts": _iso(datetime.fromtimestamp(last_ts, timezone.utc) + timedelta(hours=2)),
                 "page": {"id": "closer-home", "type": "home"}}
        plan.append(Sent(f"closer visit {sid}", sid.encode(), orjson.dumps(event), "valid"))

    pipeline.cli("topics")
    pipeline.produce(pipeline.topic("pages"), catalog)
    located = pipeline.produce_located(pipeline.topic("events"), [(s.key, s.value) for s in plan])
    for sent, (partition, offset) in zip(plan, located):
        sent.partition, sent.offset = partition, offset
    worker = pipeline.start_worker()

    expected = {**counts, **closers}

    try:
        pipeline.consume_until(pipeline.topic("personas"), pipeline.scored(expected), timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log tail ---\n{pipeline.worker_log(0)[-6000:]}\n"
                             f"--- diagnosis ---\n{pipeline.diagnose(worker)}") from None
    events_topic = pipeline.topic("events")
    try:
        pipeline.wait_for(lambda: sum(pipeline.lag(events_topic).values()) == 0, "consumer lag 0 on the events topic",
                          timeout=30)
    finally:
        pipeline.check_workers()  # the worker must still be up
    lag = pipeline.lag(events_topic)

    # visits still close on every partition (each of which got far-future events): exactly once each
    deadline = time.monotonic() + 15
    while (closed := pipeline.metric(worker, "personastream_visits_closed_total")) < len(counts) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    diagnostics = {name: pipeline.metric(worker, name) for name in (
        "personastream_events_total", "personastream_dead_letters_total", "personastream_duplicate_events_total",
        "personastream_persona_events_total", "personastream_offset_rewinds_total")}

    personas = last_by_session(pipeline.read_records(pipeline.topic("personas")))
    letters = [(r.partition, r.offset, orjson.loads(r.value)) for r in pipeline.read_records(pipeline.topic("dlq"))]
    pipeline.check_workers()

    problems: list[str] = []
    # 1. every valid visit: newest PersonaEvent = all its distinct events, first visit, offline score
    for sid, n in expected.items():
        got = personas.get(sid)
        if got is None:
            problems.append(f"{sid}: no PersonaEvent")
        elif (got["visit"], got["events_seen"]) != (0, n):
            problems.append(f"{sid}: newest PersonaEvent has visit={got['visit']} events_seen={got['events_seen']}, "
                            f"expected visit=0 events_seen={n}")
    unexpected = sorted(set(personas) - set(expected))
    if unexpected:
        problems.append(f"PersonaEvents for sessions that only had invalid records: {unexpected}")

    # 2. exactly one dead letter per invalid record, none for anything valid, each with a reason
    by_position = {(s.partition, s.offset): s for s in plan}
    letter_count = Counter((letter["partition"], letter["offset"]) for _, _, letter in letters)
    for sent in plan:
        position = (sent.partition, sent.offset)
        n = letter_count.get(position, 0)
        if sent.kind == "dlq" and n != 1:
            problems.append(f"{sent.label} at {position}: {n} dead letters, expected exactly 1")
        elif sent.kind != "dlq" and n:
            problems.append(f"{sent.label} at {position} ({sent.kind}): {n} dead letters, expected none")
    for _, _, letter in letters:
        position = (letter["partition"], letter["offset"])
        sent = by_position.get(position) if letter["topic"] == events_topic else None
        if sent is None:
            problems.append(f"dead letter for no record of this test: {letter}")
            continue
        if not letter["reason"].strip():
            problems.append(f"{sent.label}: dead letter with an empty reason")
        elif sent.reason_has and sent.reason_has not in letter["reason"]:
            problems.append(f"{sent.label}: reason {letter['reason']!r} does not mention {sent.reason_has!r}")
        if len(letter["payload"]) > 1024:
            problems.append(f"{sent.label}: dead-letter payload of {len(letter['payload'])} chars > 1024")

    # 3. no agent crashed, nothing skipped, and the event-time clock still closes visits
    problems += pipeline.agent_crashes()
    if any(lag.values()):
        problems.append(f"consumer lag on {events_topic}: {lag}")
    if closed != len(counts):
        problems.append(f"personastream_visits_closed_total = {closed:g}, expected exactly {len(counts)} (every "
                        "replayed visit closed once by the closers dated 2 h later)")

    dlq_expected = sum(s.kind == "dlq" for s in plan)
    assert not problems, (
        f"{len(problems)} problems ({dlq_expected} invalid records sent, {len(letters)} dead letters read, "
        f"metrics {diagnostics}):\n" + "\n".join(problems[:80])
        + f"\n--- worker log tail ---\n{pipeline.worker_log(0)[-4000:]}")

    offline = score_uci(frame, IntentModel.load())
    assert_parity({sid: personas[sid] for sid in counts}, offline)
