"""Follow the persona topic: a live table of the newest PersonaEvent per visit, or JSON lines."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import aclosing

import orjson
from rich.live import Live
from rich.table import Table

from stream.kafka_io import poll_topic

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
    latest: dict[str, dict] = {}
    seen = 0
    last = time.monotonic()
    live = None if as_json else Live(render(latest), refresh_per_second=4)
    if live:
        live.start()
    try:
        async with aclosing(poll_topic(bootstrap, topic, from_beginning)) as polls:
            async for values in polls:
                if idle_exit is not None and time.monotonic() - last >= idle_exit:
                    break
                if values:
                    seen += len(values)
                    last = time.monotonic()
                if as_json:
                    sys.stdout.write("".join(value.decode() + "\n" for value in values))
                    sys.stdout.flush()
                elif values:
                    for value in values:
                        event = orjson.loads(value)
                        latest[event["session_id"]] = event
                    live.update(render(latest))
    finally:
        if live:
            live.stop()
    return seen


def run(*args, **kwargs) -> int:
    try:
        return asyncio.run(tail(*args, **kwargs))
    except KeyboardInterrupt:
        return 0
