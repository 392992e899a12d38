"""Privacy through a real broker and a real worker: personal identifiers planted in every string
field of valid and invalid events appear in no topic the pipeline writes and in no file of the worker."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote

import orjson
import pytest

from tests.broker.harness import key_on_partition, partition_of

pytestmark = pytest.mark.kafka

PARTITIONS = 4
START = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Planted:
    """An identifier as written in the record (``written``, JSON-escaped where ``escaped``) and what it is."""

    label: str
    written: str
    """the string value in the event (what a JSON parser returns)"""
    escaped: str | None = None
    """how it is written inside the JSON text, if not as orjson writes ``written``"""


PLANTED = [
    Planted("email", "ann.lee@example.org"),
    Planted("email %40-encoded", "bob.kim%40example.net"),
    Planted("email \\u0040-escaped in JSON", "cy.ng@example.com", escaped="cy.ng\\u0040example.com"),
    Planted("email (at)-obfuscated", "dee.fox(at)example.com"),
    Planted("phone 415-555-0172", "415-555-0172"),
    Planted("phone +1 (415) 555-0172", "+1 (415) 555-0172"),
    Planted("IPv4", "203.0.113.9"),
    Planted("IPv4 with port", "203.0.113.9:443"),
    Planted("IPv6 compressed", "2001:db8:85a3::8a2e:370:7334"),
    Planted("IPv6 full", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
    Planted("IPv4-mapped IPv6", "::ffff:203.0.113.9"),
    Planted("card with spaces", "4111 1111 1111 1111"),
    Planted("card with dashes", "4111-1111-1111-1111"),
    Planted("card digits only", "4111111111111111"),
]

# what must never be found (searched in decoded, lower-cased text; see ``leaks``)
EMAILS = ["ann.lee@example.org", "bob.kim@example.net", "cy.ng@example.com", "dee.fox@example.com"]
EMAIL_LOCAL_PARTS = ["ann.lee", "bob.kim", "cy.ng", "dee.fox"]
DIGITS = {"phone 4155550172": "4155550172", "card 4111111111111111": "4111111111111111"}
IPV4 = ["203.0.113.9"]
IPV6 = [ipaddress.IPv6Address(a) for a in ("2001:db8:85a3::8a2e:370:7334", "2001:0db8:0000:0000:0000:ff00:0042:8329",
                                             "::ffff:203.0.113.9")]
IPV6_TEXT = ["2001:db8:85a3", "8a2e:370:7334", "2001:0db8:0000", "ff00:0042:8329", "ff00:42:8329", "::ffff:203"]

FIELDS = [
    "key", "session_id", "event_id", "type", "page.id", "page.type", "page.path", "referrer", "referrer query",
    "device.os", "device.browser", "device.screen", "device.device_class", "region", "traffic_source",
    "visitor_type", "search.query", "click.target", "product_id", "currency", "unknown field",
]
KIND_OF_FIELD = {"referrer": "page_view", "referrer query": "page_view", "search.query": "search",
                 "click.target": "click", "product_id": "add_to_cart", "currency": "purchase"}
FREE_TEXT = {"page.id", "page.path", "referrer", "referrer query", "search.query", "click.target", "product_id",
             "unknown field"}
"""fields whose identifier is scrubbed or dropped: the event itself stays valid and is counted."""


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def planted_event(n: int, field: str, value: str, valid: bool) -> tuple[bytes, dict]:
    """(record key, event) with ``value`` in ``field`` of an otherwise valid event (or one with a bad ts)."""
    sid = f"pii-{n}"
    event: dict = {
        "type": KIND_OF_FIELD.get(field, "page_view"), "event_id": f"pii-{n}-0", "session_id": sid,
        "ts": _iso(START + timedelta(seconds=n)) if valid else "the day after tomorrow",
        "page": {"id": f"pii-page-{n}", "type": "product", "path": f"/products/{n}"},
        "device": {"os": "os1", "browser": "br1", "device_class": "desktop", "screen": "m"},
        "traffic_source": "tt1", "visitor_type": "new", "region": "r1",
    }
    if event["type"] == "add_to_cart":
        event.update(product_id="sku-1", quantity=1, price=19.5)
    elif event["type"] == "purchase":
        event.update(value=42.0, currency="EUR")
    elif event["type"] == "search":
        event["query"] = "red shoes"
    elif event["type"] == "click":
        event["target"] = "buy-button"
    key = sid.encode()
    if field == "key":
        key = value.encode()
    elif field == "session_id":
        event["session_id"] = value
        key = value.encode()
    elif field in ("page.id", "page.type", "page.path"):
        event["page"][field.split(".")[1]] = f"/account/{value}/orders" if field == "page.path" else value
    elif field.startswith("device."):
        event["device"][field.split(".")[1]] = value
    elif field == "referrer":
        event["referrer"] = value
    elif field == "referrer query":
        event["referrer"] = f"https://mail.example.net/inbox?user={value}#{value}"
    elif field == "search.query":
        event["query"] = f"order status for {value}"
    elif field == "click.target":
        event["target"] = value
    elif field == "unknown field":
        event["contact"] = value
    else:  # type, event_id, region, traffic_source, visitor_type, product_id, currency
        event[field] = value
    return key, event


def _encode(event: dict, planted: Planted) -> bytes:
    raw = orjson.dumps(event)
    if planted.escaped:
        raw = raw.replace(planted.written.encode(), planted.escaped.encode())
    return raw


# -- leak detection -----------------------------------------------------------------------------------------------

_U_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_DIGIT_RUN = re.compile(r"\d(?:[\s().\-+/]{0,3}\d)*")
_IPV6_CANDIDATE = re.compile(r"[0-9a-f:.]{2,}")


def normalized(data: bytes) -> str:
    """The text a reader could recover: UTF-8 (or Latin-1), JSON \\u escapes and %-encoding undone,
    (at)/(dot) read as @/., lower-cased."""
    text = data.decode("utf-8", errors="replace") if _mostly_text(data) else data.decode("latin-1")
    for _ in range(4):  # JSON inside JSON (a dead letter's payload): undo every level of escaping
        text = text.replace("\\\\", "\\").replace('\\"', '"')
        text = unquote(_U_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text))
    text = re.sub(r"\s*[(\[{<]\s*at\s*[)\]}>]\s*", "@", text, flags=re.I)
    text = re.sub(r"\s*[(\[{<]\s*dot\s*[)\]}>]\s*", ".", text, flags=re.I)
    return text.lower()


def _mostly_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def leaks(data: bytes | None) -> list[tuple[str, str]]:
    """(identifier, context) of each planted identifier (in any of the searched forms) found in ``data``."""
    if not data:
        return []
    text = normalized(data)
    found = []

    def hit(what: str, at: int, length: int) -> None:
        found.append((what, f"...{text[max(0, at - 50):at + length + 50]!r}..."))

    for needle in EMAILS + IPV4 + IPV6_TEXT:
        if (at := text.find(needle)) >= 0:
            hit(repr(needle), at, len(needle))
    for needle, email in zip(EMAIL_LOCAL_PARTS, EMAILS):
        if email not in text and (at := text.find(needle)) >= 0:
            hit(f"{needle!r} (local part of {email})", at, len(needle))
    for run in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", run.group())
        for what, needle in DIGITS.items():
            if needle in digits:
                hit(f"{what} (digits of {run.group()!r})", run.start(), len(run.group()))
    for candidate in _IPV6_CANDIDATE.finditer(text):
        if candidate.group().count(":") < 2:
            continue
        for piece in {candidate.group(), candidate.group().strip(":."), *candidate.group().split(":::")}:
            try:
                address = ipaddress.IPv6Address(piece)
            except ValueError:
                continue
            if address in IPV6:
                hit(f"IPv6 {address.compressed}", candidate.start(), len(candidate.group()))
    return found


def _rocksdb_contents(home: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every key and value of every RocksDB database under ``home`` (the worker must be stopped)."""
    from rocksdict import AccessType, Options, Rdict

    out = {}
    for current in home.rglob("CURRENT"):
        db = Rdict(str(current.parent), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            out[str(current.parent)] = list(db.items())
        finally:
            db.close()
    return out


# -- the test -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_planted_identifiers_reach_no_topic_and_no_worker_file(pipeline, store):
    pipeline.settings.update({"PERSONASTREAM_STORE": store, "PERSONASTREAM_PERSONA_SYNC_S": "1"})
    plan: list[tuple[str, str, bool, bytes, bytes]] = []  # (field, planted label, valid?, key, value)
    n = 0
    for planted in PLANTED:
        for field in FIELDS:
            for valid in (True, False):
                key, event = planted_event(n, field, planted.written, valid)
                if valid and field == "page.id":
                    # 20 views of the planted page id: the worker publishes observed statistics for it
                    for i in range(20):
                        view = {**event, "event_id": f"pii-{n}-{i}",
                                "ts": _iso(START + timedelta(seconds=n, milliseconds=i))}
                        plan.append((field, planted.label, valid, key, _encode(view, planted)))
                else:
                    plan.append((field, planted.label, valid, key, _encode(event, planted)))
                n += 1
    # one clean visit per partition, 2 hours later: every planted visit ends (learned from, exit pages observed)
    closers = [key_on_partition("pii-closer", p, PARTITIONS) for p in range(PARTITIONS)]
    for sid in closers:
        assert partition_of(sid.encode(), PARTITIONS) in range(PARTITIONS)
        event = {"type": "page_view", "event_id": f"{sid}-0", "session_id": sid, "ts": _iso(START + timedelta(hours=2)),
                 "page": {"id": "home", "type": "home"}}
        plan.append(("closer", "none", True, sid.encode(), orjson.dumps(event)))

    pipeline.cli("topics")
    located = pipeline.produce_located(pipeline.topic("events"), [(key, value) for *_, key, value in plan])
    worker = pipeline.start_worker()

    def scored(values: list[bytes]) -> bool:
        if crashes := pipeline.agent_crashes():
            raise AssertionError("an agent crashed:\n" + "\n".join(crashes))
        return set(closers) <= {orjson.loads(v)["session_id"] for v in values}

    try:
        pipeline.consume_until(pipeline.topic("personas"), scored, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log tail ---\n{pipeline.worker_log(0)[-5000:]}\n"
                             f"--- diagnosis ---\n{pipeline.diagnose(worker)}") from None
    app_topics = [pipeline.topic("events"), f"{pipeline.topic('pages')}.observations",
                  f"{pipeline.topic('personas')}.learning"]
    pipeline.wait_for(lambda: not any(sum(pipeline.lag(t).values()) for t in app_topics),
                      "the worker to consume events, page observations and persona learning to the end", timeout=40)
    model_topic = f"{pipeline.topic('personas')}.model"
    pipeline.wait_for(lambda: pipeline.read_records(model_topic), "a merged persona model", timeout=30)

    # every topic of this pipeline on the broker, except the input itself and Kafka's internal ones
    topics = [t for t in pipeline.broker_topics()
              if pipeline.name in t and t != pipeline.topic("events") and not t.startswith("__")]
    contents = {topic: pipeline.read_records(topic) for topic in topics}
    pipeline.stop_worker(worker)
    assert worker.returncode is not None

    found: dict[tuple[str, str], list[str]] = {}  # (where, identifier) -> contexts

    def record(where: str, data: bytes | None) -> None:
        for what, context in leaks(data):
            found.setdefault((where, what), []).append(context)

    for topic, records in contents.items():
        for r in records:
            record(f"topic {topic} key", r.key)
            record(f"topic {topic} value", r.value)
    worker_home = pipeline.home / "w0"
    files = [path for path in worker_home.rglob("*") if path.is_file()]
    for path in files:
        record(f"file {path.relative_to(pipeline.home)}", path.read_bytes())
    databases = _rocksdb_contents(worker_home) if store.startswith("rocksdb") else {}
    for db, items in databases.items():
        for key, value in items:
            record(f"RocksDB {Path(db).relative_to(pipeline.home)} key", key)
            record(f"RocksDB {Path(db).relative_to(pipeline.home)} value", value)
    report = [f"{where}: {what} x{len(contexts)}, e.g. {contexts[0]}"
              for (where, what), contexts in sorted(found.items())]

    # the test means something only if identifiers went everywhere they could: valid visits scored,
    # page statistics observed, dead letters written, state stored
    personas = {orjson.loads(r.value)["session_id"] for r in contents[pipeline.topic("personas")]}
    letters = [orjson.loads(r.value) for r in contents[pipeline.topic("dlq")]]
    lettered = {(letter["partition"], letter["offset"]) for letter in letters}
    invalid_missing = [f"{field} / {label}" for (field, label, valid, _, _), position in zip(plan, located)
                       if not valid and position not in lettered]
    free_text_unscored = sorted({f"{field} / {label}" for (field, label, valid, key, _) in plan
                                 if valid and field in FREE_TEXT and key.decode() not in personas})
    observed = [r for r in contents[pipeline.topic("pages")] if r.key and r.key.startswith(b"observed/")]
    summary = (f"{len(plan)} records sent; topics read: { {t: len(rs) for t, rs in contents.items()} }; "
               f"{len(files)} worker files; "
               f"RocksDB databases: { {Path(d).name: len(i) for d, i in databases.items()} }")

    assert not found, (f"planted identifiers found in {len({w for w, _ in found})} places ({summary}):\n"
                       + "\n".join(report[:200]))
    assert not invalid_missing, f"invalid events without a dead letter ({summary}): {invalid_missing}"
    assert not free_text_unscored, (f"valid events whose identifier sits in free text (scrubbed or dropped) "
                                    f"were not scored ({summary}): {free_text_unscored}")
    assert observed, f"no observed page statistics were published ({summary})"
    assert all(db for db in databases.values()) and (databases or store == "memory://"), \
        f"no RocksDB contents to check ({summary})"
    assert pipeline.topic("pages") + ".observations" in contents and model_topic in contents, summary
    assert any("sessions-changelog" in t for t in contents) and any("page-counters-changelog" in t for t in contents), \
        summary


# -- ids rejected as personal ---------------------------------------------------------------------------------------

REJECTED_IDS = [  # (field, value as parsed, value as written in the JSON text)
    ("session_id", "4155550172", '"4155550172"'),
    ("session_id", "4111111111111111", '"4111111111111111"'),
    ("session_id", "4155550199", '"\\u0034155550199"'),
    ("event_id", "8675309", '"8675309"'),
]


def _rejected_id_events(door: str) -> list[tuple[bytes, bytes]]:
    """(key, JSON) of one event per entry of REJECTED_IDS, each otherwise valid."""
    out = []
    for n, (field, value, written) in enumerate(REJECTED_IDS):
        sid = f"{door}-{n}"
        event = {"type": "page_view", "event_id": f"{sid}-0", "session_id": sid, "ts": _iso(START),
                 "page": {"id": "home", "type": "home"}, field: "@@id@@"}
        key = value.encode() if field == "session_id" else sid.encode()
        out.append((key, orjson.dumps(event).replace(b'"@@id@@"', written.encode())))
    return out


def test_ids_rejected_as_personal_reach_no_dead_letter(pipeline):
    """Whatever validation rejects as personal in an id, the dead letter of that event does not keep: sent
    through the events topic, the worker's POST /collect and the collector's."""
    from schemas.privacy import opaque_problem
    from tests.broker.test_web import request

    assert all("looks like" in (opaque_problem(value, 64) or "") for _, value, _ in REJECTED_IDS)
    pipeline.cli("topics")
    pipeline.produce(pipeline.topic("events"), _rejected_id_events("kafka"))
    worker, collector = pipeline.start_worker(), pipeline.start_collector()
    pipeline.status(worker)
    for door, process in (("worker", worker), ("collector", collector)):
        body = b"\n".join(value for _, value in _rejected_id_events(door))
        status, _, reply = request(process.web_port, "/collect", body, "text/plain")
        assert status == 202 and len(orjson.loads(reply)["rejected"]) == len(REJECTED_IDS), (door, status, reply)

    expected = 3 * len(REJECTED_IDS)
    values = pipeline.consume_until(pipeline.topic("dlq"), lambda v: len(v) >= expected, timeout=60)
    assert len(values) == expected
    kept = [(value, letter) for letter in values for _, value, _ in REJECTED_IDS if value in normalized(letter)]
    assert not kept, "ids rejected as personal kept in dead letters:\n" + "\n".join(
        f"{value}: {letter[:300]!r}" for value, letter in kept)
