"""The benchmark's input: UCI-replayed visits interleaved with synthetic click/scroll/dwell visits.

Every event is valid for :func:`schemas.events.parse_event`, keyed by its ``session_id``, and each
visit stays within the inactivity gap, so a visit's final PersonaEvent has ``events_seen`` equal to
the number of its records here.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import orjson

from models.training.uci import read_uci
from schemas.pages import PageStats
from stream.pages import page_record
from stream.tools.replay import Outgoing, uci_records

UCI_EVENTS_PER_ROW = 74
"""Mean events per replayed UCI row of train.csv (726,526 events / 9,864 rows)."""

PAGE_TYPES = ("home", "category", "product", "product", "product", "search", "cart", "checkout", "account", "info")
KINDS = ("page_view", "click", "scroll", "dwell")
KIND_WEIGHTS = (0.25, 0.3, 0.25, 0.2)
SYNTHETIC_START = datetime(2024, 3, 4, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Workload:
    catalog: list[tuple[bytes, bytes]]
    """page catalog records for the pages topic."""
    records: list[Outgoing]
    """events in send order."""

    def sessions(self) -> Counter[bytes]:
        """session key -> number of its events (its final ``events_seen``)."""
        return Counter(record.key for record in self.records)


def build(csv: Path, events: int, uci_share: float = 0.7, seed: int = 5) -> Workload:
    """``events`` events: about ``uci_share`` of them replayed UCI rows, the rest synthetic visits."""
    frame = read_uci(csv)
    rows = min(len(frame), max(1, math.ceil(uci_share * events / UCI_EVENTS_PER_ROW)))
    catalog, uci = uci_records(frame.head(rows))
    uci = uci[:events]
    pages, synthetic = synthetic_events(events - len(uci), random.Random(seed))
    return Workload(catalog + pages, retime(merge(uci, synthetic, random.Random(seed + 1))))


def retime(records: list[Outgoing], start: datetime = SYNTHETIC_START, span_s: float = 1200.0) -> list[Outgoing]:
    """Event times rewritten to one clock ticking evenly over ``span_s`` (at most 1 ms per event).

    Replayed UCI visits (2016-2017) and synthetic ones share partitions, and the worker closes the
    visits of a partition idle for the gap in that partition's event time; one clock keeps every
    visit open, so each ends with ``events_seen`` equal to its number of events.
    """
    step = min(0.001, span_s / max(len(records), 1))
    base = start.timestamp()
    out = []
    for i, record in enumerate(records):
        data = orjson.loads(record.value)
        ts = base + i * step
        data["ts"] = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        out.append(Outgoing(record.key, orjson.dumps(data), ts))
    return out


def merge(first: list[Outgoing], second: list[Outgoing], rng: random.Random) -> list[Outgoing]:
    """Both lists interleaved at random, each keeping its own order."""
    out: list[Outgoing] = []
    i = j = 0
    while i < len(first) or j < len(second):
        left = len(first) - i
        if j >= len(second) or rng.random() * (left + len(second) - j) < left:
            out.append(first[i])
            i += 1
        else:
            out.append(second[j])
            j += 1
    return out


def synthetic_pages(rng: random.Random, n: int = 400) -> list[PageStats]:
    return [PageStats(page_id=f"syn/p{j}", bounce_rate=rng.uniform(0, 0.2), exit_rate=rng.uniform(0, 0.2),
                      page_value=rng.choice((0.0, 0.0, 0.0, rng.uniform(0, 60)))) for j in range(n)]


def synthetic_events(n: int, rng: random.Random,
                     concurrent: int = 2000) -> tuple[list[tuple[bytes, bytes]], list[Outgoing]]:
    """Catalog records and ``n`` events of synthetic visits, ``concurrent`` of them interleaved at a time."""
    pages = synthetic_pages(rng)
    visits = _visits(pages, rng)
    active: list[Iterator[Outgoing]] = []
    out: list[Outgoing] = []
    while len(out) < n:
        while len(active) < concurrent:
            active.append(next(visits))
        slot = rng.randrange(len(active))
        record = next(active[slot], None)
        if record is None:
            active[slot] = active[-1]
            active.pop()
        else:
            out.append(record)
    return [page_record(p) for p in pages], out


def _visits(pages: list[PageStats], rng: random.Random) -> Iterator[Iterator[Outgoing]]:
    index = 0
    while True:
        yield _visit(index, pages, rng)
        index += 1


def _visit(index: int, pages: list[PageStats], rng: random.Random) -> Iterator[Outgoing]:
    """One synthetic visit: a landing page view, then page views, clicks, scrolls and dwell heartbeats."""
    sid = f"syn-{index}"
    key = sid.encode()
    context = {"session_id": sid,
               "device": {"os": f"os{rng.randint(1, 8)}", "browser": f"br{rng.randint(1, 13)}",
                          "device_class": rng.choice(("desktop", "mobile", "tablet"))},
               "traffic_source": f"tt{rng.randint(1, 20)}", "visitor_type": rng.choice(("new", "returning")),
               "region": f"r{rng.randint(1, 9)}"}
    t = SYNTHETIC_START + timedelta(seconds=3 * index)
    page = _page(pages, rng)
    for seq in range(rng.randint(8, 40)):
        kind = "page_view" if seq == 0 else rng.choices(KINDS, KIND_WEIGHTS)[0]
        if kind == "page_view" and seq:
            page = _page(pages, rng)
        event = {"type": kind, "event_id": f"{sid}-{seq}", "ts": t.isoformat().replace("+00:00", "Z"),
                 "page": page, **context}
        if kind == "scroll":
            event["depth_pct"] = round(rng.uniform(5, 100), 1)
        elif kind == "dwell":
            event["seconds"] = round(rng.uniform(1, 60), 2)
        yield Outgoing(key, orjson.dumps(event), t.timestamp())
        t += timedelta(seconds=rng.uniform(1, 30))


def _page(pages: list[PageStats], rng: random.Random) -> dict[str, str]:
    j = rng.randrange(len(pages))
    return {"id": pages[j].page_id, "type": PAGE_TYPES[j % len(PAGE_TYPES)]}
