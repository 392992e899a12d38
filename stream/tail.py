"""Follow the persona topic: a live table of the newest PersonaEvent per visit, or JSON lines."""

from __future__ import annotations

import asyncio
import sys
import time
import orjson
from aiokafka import AIOKafkaConsumer
from rich.live import Live
from rich.table import Table

from stream.kafka_io import assign_all

BAND_STYLE = {"high": "bold green", "medium": "yellow", "low": "dim"}


def render(latest: dict[str, dict], limit: int = 25) -> Table:
    table = Table(title=f"personastream — {len(latest)} visits", expand=True)
    for column in ("session", "visit", "persona", "conf", "intent", "band", "action", "events", "pages", "event time"):
        table.add_column(column)
    newest = sorted(latest.values(), key=lambda p: p["event_time"], reverse=True)[:limit]
    for p in newest:
        table.add_row(p["session_id"], str(p["visit"]), p["persona"], f"{p['persona_confidence']:.2f}",
                      f"{p['intent_score']:.3f}", p["intent_band"], p["recommended_action"], str(p["events_seen"]),
                      str(p["page_views"]), p["event_time"][:19], style=BAND_STYLE.get(p["intent_band"]))
    return table


async def tail(bootstrap: str, topic: str, as_json: bool, idle_exit: float | None, from_beginning: bool) -> int:
    """Print PersonaEvents until interrupted or ``idle_exit`` seconds pass without one; return the count."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    latest: dict[str, dict] = {}
    seen = 0
    try:
        await assign_all(consumer, topic, from_beginning)
        last = time.monotonic()
        live = None if as_json else Live(render(latest), refresh_per_second=4)
        if live:
            live.start()
        try:
            while idle_exit is None or time.monotonic() - last < idle_exit:
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
                for records in batches.values():
                    for record in records:
                        seen += 1
                        last = time.monotonic()
                        if as_json:
                            sys.stdout.write(record.value.decode() + "\n")
                        else:
                            event = orjson.loads(record.value)
                            latest[event["session_id"]] = event
                if as_json:
                    sys.stdout.flush()
                elif batches:
                    live.update(render(latest))
        finally:
            if live:
                live.stop()
    finally:
        await consumer.stop()
    return seen


def run(*args, **kwargs) -> int:
    try:
        return asyncio.run(tail(*args, **kwargs))
    except KeyboardInterrupt:
        return 0
