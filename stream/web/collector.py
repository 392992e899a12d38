"""The HTTP collector's pure side: request bodies to validated events, and a per-client rate limit.

A body is a JSON array of events, or NDJSON (one event per line), sent as ``application/json``,
``application/x-ndjson`` or ``text/plain`` (what ``navigator.sendBeacon`` sends). Each event is
validated by the very schema the worker uses; a valid one is produced in its validated, scrubbed
form (unknown fields dropped), keyed by ``session_id``. The device fields come from the request's
User-Agent (:mod:`stream.web.useragent`), and a known crawler's events are marked ``bot``. The
client's address is used only for the in-memory rate limit, under a salted hash.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiohttp.web import Request

from schemas.dead_letter import DeadLetter
from schemas.events import EventError, parse_event
from stream.web.useragent import ClientDevice, client_device

TRACKER = Path(__file__).parent / "static" / "tracker.js"
"""The browser tracker, served at ``/tracker.js``."""
MAX_BODY_BYTES = 64 * 1024
MAX_EVENTS = 500
CONTENT_TYPES = ("application/json", "application/x-ndjson", "text/plain")


class BodyError(ValueError):
    """A request the collector refuses as a whole; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def split_body(body: bytes, content_type: str) -> list[object]:
    """The events of a request body: parsed JSON values, or the raw bytes of an NDJSON line that is
    not JSON (rejected one by one later). :class:`BodyError` for a body refused as a whole."""
    kind = content_type.split(";")[0].strip().lower()
    if kind not in CONTENT_TYPES:
        raise BodyError(415, f"content type must be one of {', '.join(CONTENT_TYPES)}")
    if len(body) > MAX_BODY_BYTES:
        raise BodyError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    text = body.strip()
    if not text:
        raise BodyError(400, "empty body")
    if text[:1] == b"[":
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BodyError(400, f"malformed JSON array: {exc}") from None
    else:
        items = []
        for line in text.splitlines():
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    items.append(bytes(line))
    if len(items) > MAX_EVENTS:
        raise BodyError(413, f"at most {MAX_EVENTS} events per request, got {len(items)}")
    return items


@dataclass
class Collected:
    accepted: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(session_id, validated event JSON) to produce to the events topic."""
    rejected: list[dict] = field(default_factory=list)
    """{"index": i, "reason": ...} per invalid event, for the reply."""
    dead_letters: list[DeadLetter] = field(default_factory=list)


def collect(items: list[object], device: ClientDevice, source: str = "collector") -> Collected:
    """Validate ``items`` as events with the device fields of ``device``."""
    out = Collected()
    now = datetime.now(timezone.utc)
    for index, item in enumerate(items):
        if isinstance(item, dict):
            item = _with_device(item, device)
        note = None
        try:
            raw = item if isinstance(item, bytes) else orjson.dumps(item)
            event = parse_event(raw)
        except orjson.JSONEncodeError as exc:  # orjson reads 1,024 levels of nesting but writes only 255
            reason, raw, note = f"event nested too deeply to be encoded again ({exc})", b"", "payload not kept"
        except EventError as exc:
            reason = exc.reason
        else:
            out.accepted.append((event.session_id.encode(), event.model_dump_json().encode()))
            continue
        out.rejected.append({"index": index, "reason": reason})
        out.dead_letters.append(DeadLetter.for_payload(raw, reason=reason, topic=source, partition=-1, offset=index,
                                                       received_at=now, note=note))
    return out


async def receive(request: Request, writers: "Writers", limiter: "RateLimiter") -> Collected:
    """The events of one ``POST /collect``, validated; :class:`BodyError` for a request refused as a whole
    (origin, rate limit, size, content type, body)."""
    if not writers.allow(request.headers.get("Origin")):
        raise BodyError(403, "this origin may not send events")
    if not limiter.allow(request.remote or ""):
        raise BodyError(429, "too many requests from this client")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise BodyError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = await request.content.read(MAX_BODY_BYTES + 1)
    items = split_body(body, request.headers.get("Content-Type", ""))
    return collect(items, client_device(request.headers.get("User-Agent")))


def reply(result: Collected) -> dict:
    """The 202 body: how many events were accepted, and why the others were not."""
    return {"accepted": len(result.accepted), "rejected": result.rejected}


def _with_device(item: dict, device: ClientDevice) -> dict:
    sent = item.get("device")
    fields = dict(sent) if isinstance(sent, dict) else {}
    if device.os != "unknown" or device.browser != "unknown":
        fields.update(os=device.os, browser=device.browser, device_class=device.device_class)
    item = {**item, "device": fields}
    if device.bot:
        item["bot"] = True
    return item


@dataclass(frozen=True)
class Writers:
    """Who may send events: browser pages of the allowed origins (CORS only limits what a page may *read*;
    ``sendBeacon`` and form-like POSTs are sent from any page), and clients that send no ``Origin`` header
    (servers, curl) if ``no_origin``.

    >>> writers = Writers(frozenset({"https://shop.example"}), no_origin=False)
    >>> [writers.allow(origin) for origin in ("https://shop.example", "https://evil.example", "null", None)]
    [True, False, False, False]
    """

    origins: frozenset[str]
    no_origin: bool

    def allow(self, origin: str | None) -> bool:
        return self.no_origin if origin is None else origin in self.origins


class RateLimiter:
    """Token bucket per client, in memory only, keyed by a salted hash of the client's address (the
    salt is random per process), so no address is kept in clear even in memory.

    >>> limit = RateLimiter(per_s=1.0, burst=2)
    >>> [limit.allow("198.51.100.7") for _ in range(3)]
    [True, True, False]
    """

    def __init__(self, per_s: float, burst: float, max_clients: int = 100_000) -> None:
        self.per_s, self.burst, self.max_clients = per_s, burst, max_clients
        self._salt = os.urandom(16)
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        key = hashlib.blake2b(client.encode(), key=self._salt, digest_size=12).digest()
        now = time.monotonic()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.per_s)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return allowed
