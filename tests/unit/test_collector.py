"""The HTTP collector's pure side: bodies, validation, device fields from the User-Agent, rate limit."""

from __future__ import annotations

import asyncio
import doctest

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import stream.web.collector
from stream.web.collector import MAX_BODY_BYTES, MAX_EVENTS, BodyError, RateLimiter, Writers, collect, split_body
from stream.web.guard import answer_failures
from stream.web.useragent import UNKNOWN, client_device

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def event(i: int = 0, **fields) -> dict:
    return {"type": "page_view", "event_id": f"e{i}", "session_id": "tokABCdef", "ts": "2024-05-01T10:00:00Z",
            "page": {"id": "home", "type": "home"}, **fields}


def test_a_json_array_ndjson_and_text_plain_bodies_give_the_same_events():
    events = [event(i) for i in range(3)]
    array = split_body(orjson.dumps(events), "application/json")
    ndjson = split_body(b"\n".join(orjson.dumps(e) for e in events), "application/x-ndjson")
    beacon = split_body(orjson.dumps(events), "text/plain;charset=UTF-8")
    assert array == ndjson == beacon == events


@pytest.mark.parametrize("body, content_type, status", [
    (b"[]" + b" " * MAX_BODY_BYTES, "application/json", 413),
    (orjson.dumps([{}] * (MAX_EVENTS + 1)), "application/json", 413),
    (b"[{not json", "application/json", 400),
    (b"   ", "application/json", 400),
    (b"[]", "application/xml", 415),
    (b"[]", "multipart/form-data", 415),
])
def test_bodies_refused_as_a_whole(body, content_type, status):
    with pytest.raises(BodyError) as refused:
        split_body(body, content_type)
    assert refused.value.status == status and refused.value.reason


def test_invalid_events_are_rejected_one_by_one_and_valid_ones_beside_them_are_kept():
    items = split_body(b"\n".join([orjson.dumps(event(0)), b"{broken", orjson.dumps(event(2, session_id="a@b.example")),
                                   orjson.dumps(event(3))]), "text/plain")
    result = collect(items, client_device(CHROME))
    assert [r["index"] for r in result.rejected] == [1, 2] and all(r["reason"] for r in result.rejected)
    assert len(result.accepted) == 2 and len(result.dead_letters) == 2
    assert not any("a@b.example" in letter.model_dump_json() for letter in result.dead_letters)


def test_accepted_events_carry_device_fields_from_the_user_agent_never_the_user_agent_or_unknown_fields():
    result = collect([event(0, ip="203.0.113.9", user_id="u-1", device={"os": "Evil OS", "screen": "l"})],
                     client_device(CHROME))
    key, value = result.accepted[0]
    sent = orjson.loads(value)
    assert key == b"tokABCdef" and sent["device"]["os"] == "Windows" and sent["device"]["browser"] == "Chrome"
    assert sent["device"]["device_class"] == "desktop" and sent["device"]["screen"] == "l"
    assert "ip" not in sent and "user_id" not in sent and b"Mozilla" not in value and b"203.0.113.9" not in value
    assert sent["bot"] is False


def test_a_crawler_is_marked_as_a_bot():
    device = client_device(GOOGLEBOT)
    assert device.bot
    assert orjson.loads(collect([event()], device).accepted[0][1])["bot"] is True


def test_user_agents_map_to_coarse_device_classes():
    assert client_device(None) == UNKNOWN
    assert client_device(CHROME).device_class == "desktop"
    assert client_device("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                         "Chrome/120.0 Mobile Safari/537.36").device_class == "mobile"
    assert client_device("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                         "Version/17.0 Mobile/15E148 Safari/604.1").device_class == "tablet"


def test_the_rate_limit_is_per_client_and_refills():
    limit = RateLimiter(per_s=1000.0, burst=3)
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b")
    import time
    time.sleep(0.01)
    assert limit.allow("a")


@pytest.mark.parametrize("depth", [200, 256, 1000])
def test_an_event_nested_deeper_than_orjson_writes_is_rejected_alone(depth):
    deep = orjson.dumps(event(1, extra="@")).replace(b'"@"', b"[" * depth + b"]" * depth)
    result = collect(split_body(b"\n".join([orjson.dumps(event(0)), deep]), "text/plain"), client_device(CHROME))
    if depth < 255:
        assert len(result.accepted) == 2
        return
    assert len(result.accepted) == 1 and [r["index"] for r in result.rejected] == [1]
    assert "nested" in result.rejected[0]["reason"] and result.dead_letters[0].note == "payload not kept"


def test_an_unexpected_failure_is_answered_by_the_app():
    async def fail(request: web.Request) -> web.Response:
        raise RuntimeError("jo@example.com")

    async def call() -> tuple[int, dict]:
        app = web.Application(middlewares=[answer_failures])
        app.router.add_post("/collect", fail)
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/collect", data=b"[]")
            return response.status, await response.json()

    assert asyncio.run(call()) == (500, {"error": "internal error (RuntimeError)"})


def test_doctests() -> None:
    assert doctest.testmod(stream.web.collector).failed == 0


@pytest.mark.parametrize("no_origin", [True, False])
def test_only_allowed_origins_write_and_requests_without_one_as_configured(no_origin):
    writers = Writers(frozenset({"https://shop.example", "http://127.0.0.1:8000"}), no_origin)
    assert writers.allow("https://shop.example") and writers.allow("http://127.0.0.1:8000")
    assert not any(writers.allow(origin) for origin in ("https://evil.example", "https://shop.example.evil.example",
                                                        "http://shop.example", "null", ""))
    assert writers.allow(None) is no_origin
