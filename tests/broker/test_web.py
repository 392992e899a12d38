"""The collector and the visit lookup on the workers' web ports, through a real broker and two workers."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from tests.broker.harness import latest_by_session

pytestmark = pytest.mark.kafka

ORIGIN = "https://shop.example"


def visit_events(sid: str, n: int, minute: int = 0) -> list[dict]:
    return [{"type": "page_view" if i % 2 == 0 else "dwell", "event_id": f"{sid}-{i}", "session_id": sid,
             "ts": f"2024-05-01T10:{minute + i:02d}:00Z", "page": {"id": f"p{i // 2}", "type": "product"},
             **({"seconds": 12.0} if i % 2 else {})} for i in range(n)]


def request(port: int, path: str, body: bytes | None = None, content_type: str = "application/json",
            method: str | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_collector_refuses_hostile_bodies_and_loses_no_valid_event_beside_them(pipeline):
    pipeline.settings["PERSONASTREAM_ALLOWED_ORIGINS"] = ORIGIN
    pipeline.cli("topics")
    first, second = pipeline.start_worker(), pipeline.start_worker()
    for worker in (first, second):
        pipeline.status(worker)  # web servers up
    valid = {f"tok{c}visit": visit_events(f"tok{c}visit", 6) for c in "ABCDEFGH"}
    hostile = [
        ("oversized", b"[" + b" " * (70 * 1024) + b"]", "application/json", 413),
        ("wrong content type", orjson.dumps(valid["tokAvisit"]), "application/xml", 415),
        ("10,000 tiny events", b"\n".join([b"{}"] * 10_000), "text/plain", 413),
        ("invalid JSON", b"[{\"type\": ", "application/json", 400),
    ]

    def send_valid(sid: str) -> tuple[int, dict]:
        body = b"\n".join(orjson.dumps(e) for e in valid[sid])
        status, _, reply = request((first, second)[ord(sid[3]) % 2].web_port, "/collect", body, "text/plain")
        return status, orjson.loads(reply)

    def send_hostile(case) -> tuple[str, int, dict]:
        name, body, content_type, _ = case
        status, _, reply = request(first.web_port, "/collect", body, content_type)
        return name, status, orjson.loads(reply)

    with ThreadPoolExecutor(8) as pool:
        valid_replies = list(pool.map(send_valid, valid))
        hostile_replies = list(pool.map(send_hostile, hostile))
    assert all(status == 202 and reply == {"accepted": 6, "rejected": []} for status, reply in valid_replies)
    for (name, status, reply), (_, _, _, expected) in zip(hostile_replies, hostile):
        assert status == expected and reply["error"], (name, status, reply)

    email = [{**visit_events("x", 1)[0], "session_id": "jane.doe@example.com"}, *visit_events("tokMixed", 2)]
    status, _, reply = request(second.web_port, "/collect", orjson.dumps(email))
    reply = orjson.loads(reply)
    assert status == 202 and reply["accepted"] == 2 and [r["index"] for r in reply["rejected"]] == [0]
    assert "session_id" in reply["rejected"][0]["reason"] and "jane.doe" not in reply["rejected"][0]["reason"]

    expected = {**{sid: 6 for sid in valid}, "tokMixed": 2}
    values = pipeline.consume_until(pipeline.topic("personas"), lambda v: all(
        latest_by_session(v).get(s, {}).get("events_seen") == n for s, n in expected.items()))
    latest = latest_by_session(values)
    letters = pipeline.consume_until(pipeline.topic("dlq"), lambda v: len(v) >= 1)
    assert not any(b"jane.doe" in letter for letter in letters)

    for sid, n in expected.items():  # any worker answers, and with the newest PersonaEvent published
        answers = [orjson.loads(pipeline.web(worker, f"/visits/{sid}")) for worker in (first, second)]
        assert answers[0] == answers[1] and answers[0]["events_seen"] == n
        assert answers[0]["intent_score"] == latest[sid]["intent_score"]

    assert request(first.web_port, "/visits/tokNeverSeen")[0] == 404
    for bad in ("jane.doe%40example.com", "203.0.113.9", "415-555-0172"):
        status, _, reply = request(second.web_port, f"/visits/{bad}")
        assert status == 400 and orjson.loads(reply)["error"], bad


def test_browsers_of_allowed_origins_only_may_call_the_collector(pipeline):
    pipeline.settings["PERSONASTREAM_ALLOWED_ORIGINS"] = ORIGIN
    pipeline.cli("topics")
    worker = pipeline.start_worker()
    pipeline.status(worker)
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    status, headers, _ = request(worker.web_port, "/collect", method="OPTIONS", headers={"Origin": ORIGIN, **preflight})
    assert status == 200 and headers.get("Access-Control-Allow-Origin") == ORIGIN
    status, headers, _ = request(worker.web_port, "/collect", method="OPTIONS",
                                 headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in headers
    body = orjson.dumps(visit_events("tokCors", 1))
    _, headers, _ = request(worker.web_port, "/collect", body, "text/plain", headers={"Origin": ORIGIN})
    assert headers.get("Access-Control-Allow-Origin") == ORIGIN
    _, headers, _ = request(worker.web_port, "/collect", body, "text/plain", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers



def deep_event(sid: str, depth: int) -> bytes:
    """JSON of a valid event with an unknown field nested ``depth`` levels deep (orjson reads 1,024 levels and
    writes 255)."""
    event = {**visit_events(sid, 2)[1], "extra": "@@deep@@"}
    return orjson.dumps(event).replace(b'"@@deep@@"', b"[" * (depth - 1) + b"]" * (depth - 1))


def test_deeply_nested_events_are_answered_by_the_app_not_by_an_exception(pipeline):
    pipeline.cli("topics")
    worker, collector = pipeline.start_worker(), pipeline.start_collector()
    pipeline.status(worker)
    for door, process in (("worker", worker), ("collector", collector)):
        for depth in (256, 300, 1000):
            sid = f"tokDeep{door}{depth}"
            valid, deep = orjson.dumps(visit_events(sid, 1)[0]), deep_event(sid, depth)
            for body, content_type in ((b"[" + valid + b"," + deep + b"]", "application/json"),
                                       (valid + b"\n" + deep, "text/plain")):
                status, _, reply = request(process.web_port, "/collect", body, content_type)
                assert status == 202, (door, depth, content_type, status, reply[:300])
                reply = orjson.loads(reply)
                assert reply["accepted"] == 1 and [r["index"] for r in reply["rejected"]] == [1], (door, depth, reply)
                assert "nested" in reply["rejected"][0]["reason"], reply
    for door, log in (("worker", pipeline.worker_log(0)), ("collector", pipeline.collector_log(0))):
        assert "Traceback" not in log and "Error handling request" not in log, f"{door} log:\n{log[-3000:]}"


def test_only_pages_of_allowed_origins_may_write_events(pipeline):
    """A POST /collect whose Origin is not allowed is refused (403) and produces nothing; one without an Origin
    is allowed by default (the worker) and refused with PERSONASTREAM_ALLOW_NO_ORIGIN=false (the collector)."""
    pipeline.settings["PERSONASTREAM_ALLOWED_ORIGINS"] = ORIGIN
    pipeline.cli("topics")
    worker, collector = pipeline.start_worker(), pipeline.start_collector(PERSONASTREAM_ALLOW_NO_ORIGIN="false")
    pipeline.status(worker)
    cases = [  # (name, headers, status from the worker, status from the collector)
        ("allowed", {"Origin": ORIGIN}, 202, 202),
        ("other site", {"Origin": "https://evil.example"}, 403, 403),
        ("look-alike", {"Origin": f"{ORIGIN}.evil.example"}, 403, 403),
        ("opaque origin", {"Origin": "null"}, 403, 403),
        ("no origin", {}, 202, 403),
    ]
    written, answers = set(), []
    for door, process in (("worker", worker), ("collector", collector)):
        for name, headers, *statuses in cases:
            sid = f"tokOrigin{door}{len(answers)}"
            status, _, reply = request(process.web_port, "/collect", orjson.dumps(visit_events(sid, 2)), "text/plain",
                                       headers=headers)
            answers.append((door, name, status, statuses[door == "collector"], orjson.loads(reply)))
            if status == 202:
                written.add(sid)
    wrong = [answer for answer in answers if answer[2] != answer[3] or (answer[2] == 403) != ("error" in answer[4])]
    assert not wrong, f"(door, case, status, expected, reply): {wrong}"
    produced = {orjson.loads(record.value)["session_id"] for record in pipeline.read_records(pipeline.topic("events"))}
    assert produced == written and len(written) == 3


HOSTILE_REQUESTS = [  # raw HTTP that aiohttp refuses before any handler, each with an email in the request's text
    b"GET /collect?contact=jane.doe@example.com&pad=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /collect HTTP/1.1\r\nHost: a\r\nX-Contact jane.doe@example.com\r\n\r\n",
    b"POST /collect HTTP/1.1\r\nHost: a\r\nX-Contact: jane.doe@example.com\x01\r\n\r\n",
    b"POST /c\x00llect?jane.doe@example.com HTTP/1.1\r\nHost: a\r\n\r\n",
]


def send_raw(port: int, requests: list[bytes], concurrency: int = 10) -> list[bytes]:
    """Send each raw request on its own connection; the status line of each answer."""

    async def one(data: bytes, limit: asyncio.Semaphore) -> bytes:
        async with limit:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(data)
                await writer.drain()
                return (await reader.read()).split(b"\r\n", 1)[0]
            finally:
                writer.close()

    async def send() -> list[bytes]:
        limit = asyncio.Semaphore(concurrency)
        return await asyncio.gather(*(one(data, limit) for data in requests))

    return asyncio.run(send())


def test_hostile_requests_write_no_personal_data_and_little_into_the_logs(pipeline):
    """1,000 requests that aiohttp refuses (400), each with an email in its text, to the worker and to the
    collector: their log lines are scrubbed (no email, no client address) and collapsed (a few KB)."""
    pipeline.cli("topics")
    worker, collector = pipeline.start_worker(), pipeline.start_collector()
    pipeline.wait_for(lambda: "Worker]: Ready" in pipeline.worker_log(0), "the worker to be ready")
    logs = {"worker": pipeline.home / "worker-0.log", "collector": pipeline.home / "collector-0.log"}
    problems, grown = [], {}
    for door, process in (("worker", worker), ("collector", collector)):
        before = logs[door].stat().st_size
        started = time.monotonic()
        answers = send_raw(process.web_port, HOSTILE_REQUESTS * 250)
        elapsed = time.monotonic() - started
        assert all(answer.split(b" ")[1:2] == [b"400"] for answer in answers), set(answers)
        time.sleep(1)  # let the last lines reach the file
        written = logs[door].read_bytes()[before:].decode(errors="replace")
        grown[door] = f"{len(written):,} bytes ({elapsed:.1f} s)"
        request_lines = [line for line in written.splitlines() if "request" in line.lower()]
        if not request_lines:
            problems.append(f"{door}: no log line about the refused requests")
        if "jane.doe" in written or "example.com" in written:
            problems.append(f"{door}: the email is in the log")
        if [line for line in request_lines if "127.0.0.1" in line]:
            problems.append(f"{door}: the client address is in the log")
        if len(written) > 16_384:
            problems.append(f"{door}: {len(written):,} bytes of log")
        if problems:
            problems.append(f"{door} log tail:\n{written[-2500:]}")
    assert not problems, f"log growth for 1,000 hostile requests: {grown}\n" + "\n".join(problems)
