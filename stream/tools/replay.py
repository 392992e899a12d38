"""Replay recorded traffic into the events topic: raw JSONL/CSV files, or UCI rows as visits."""

from __future__ import annotations

import asyncio
import csv
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson
from aiokafka import AIOKafkaProducer

from models.training.uci import prefix, sessions
from schemas.pages import PageStats
from stream.pages import page_record


@dataclass(frozen=True)
class Outgoing:
    """One record to produce: its key, raw value and event time (epoch seconds, if known)."""

    key: bytes | None
    value: bytes
    ts: float | None


def _nest(row: dict[str, str]) -> dict:
    """CSV columns with dotted names (``page.id``) become nested objects; empty cells are dropped."""
    out: dict = {}
    for column, cell in row.items():
        if cell in ("", None):
            continue
        *parents, leaf = column.split(".")
        target = out
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _number(cell)
    return out


def _number(cell: str) -> object:
    for cast in (int, float):
        try:
            return cast(cell)
        except ValueError:
            pass
    return cell


def _outgoing(value: bytes) -> Outgoing:
    """Key by session_id and read the event time where the payload allows; pass it on regardless."""
    try:
        data = orjson.loads(value)
        key = str(data["session_id"]).encode()
        ts = data.get("ts")
        seconds = ts / 1000 if isinstance(ts, (int, float)) else datetime.fromisoformat(ts).timestamp()
    except Exception:  # noqa: BLE001 - invalid events are still sent: the worker dead-letters them
        return Outgoing(None, value, None)
    return Outgoing(key, value, seconds)


def read_events(path: Path) -> list[Outgoing]:
    """Raw events from a JSONL file (one event per line) or a CSV file (dotted column names)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            return [_outgoing(orjson.dumps(_nest(row))) for row in csv.DictReader(handle)]
    with path.open("rb") as handle:
        return [_outgoing(line.rstrip(b"\r\n")) for line in handle if line.strip()]


def uci_records(frame, fraction: float = 1.0) -> tuple[list[tuple[bytes, bytes]], list[Outgoing]]:
    """Page catalog records and events (interleaved in event time) for every row of a UCI frame.

    ``fraction`` < 1 replays each visit only up to that share of its page views.
    """
    catalog: list[tuple[bytes, bytes]] = []
    timeline: list[tuple[str, int, int, Outgoing]] = []
    for index, session in enumerate(sessions(frame)):
        session = prefix(session, fraction) if fraction < 1 else session
        catalog.extend(page_record(stats) for stats in session.pages)
        key = session.session_id.encode()
        for seq, event in enumerate(session.events):
            value = orjson.dumps(event)
            outgoing = Outgoing(key, value, datetime.fromisoformat(event["ts"]).timestamp())
            timeline.append((event["ts"], index, seq, outgoing))
    timeline.sort(key=lambda item: item[:3])
    return catalog, [item[3] for item in timeline]


def paced(records: list[Outgoing], speed: float | None) -> Iterator[tuple[float, Outgoing]]:
    """(seconds to wait before sending, record): 0 when ``speed`` is None, else event-time gaps / speed."""
    previous: float | None = None
    for record in records:
        wait = 0.0
        if speed and record.ts is not None:
            if previous is not None:
                wait = max(0.0, (record.ts - previous) / speed)
            previous = record.ts
        yield wait, record


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[float, Outgoing]],
                  advance: Callable[[int], None] = lambda n: None) -> int:
    """Send records in order (waiting as told), flushing at the end; return how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=262144,
                                acks="all", enable_idempotence=True)
    await producer.start()
    sent = 0
    try:
        pending = []
        clock = time.monotonic()
        for wait, record in records:
            if wait:
                clock += wait
                delay = clock - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(await producer.send(topic, record.value, key=record.key))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                advance(len(pending))
                pending.clear()
        await producer.flush()
        await asyncio.gather(*pending)
        advance(len(pending))
    finally:
        await producer.stop()
    return sent


async def seed_pages(bootstrap: str, topic: str, catalog: list[tuple[bytes, bytes]]) -> int:
    """Write page catalog records to the (compacted) pages topic."""
    return await produce(bootstrap, topic, ((0.0, Outgoing(k, v, None)) for k, v in catalog))


def read_catalog(path: Path) -> list[tuple[bytes, bytes]]:
    """A page catalog CSV/JSONL with page_id, bounce_rate, exit_rate, page_value."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [page_record(PageStats.model_validate({**row, "source": "catalog"})) for row in rows]
