"""`make demo`: broker, topics, worker, replayed sample sessions, PersonaEvents — then stop it all."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import aclosing
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from models.training.uci import read_uci
from stream.config import settings
from stream.kafka_io import poll_topic
from stream.tools.broker import LocalBroker, free_port, stop_process
from stream.tools.replay import paced, produce, seed_pages, uci_records
from stream.topics import ensure_topics

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "online_shoppers_sample.csv"
VISITS = 200
console = Console(width=150)


async def collect(bootstrap: str, topic: str, expected: Counter, timeout: float,
                  worker: subprocess.Popen) -> dict[str, dict]:
    """Newest PersonaEvent per visit, until each reflects all of its events (or ``timeout``, or the worker exits)."""
    latest: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    async with aclosing(poll_topic(bootstrap, topic)) as polls:
        async for values in polls:
            for value in values:
                event = orjson.loads(value)
                latest[event["session_id"]] = event
            if (time.monotonic() > deadline or worker.poll() is not None
                    or all(latest.get(s, {}).get("events_seen") == n for s, n in expected.items())):
                break
    return latest


def show(latest: dict[str, dict], labels: dict[str, bool]) -> None:
    table = Table(title="Final PersonaEvent of the 12 highest-intent visits")
    for column in ("session", "persona", "intent", "band", "top feature", "action", "events", "bought?"):
        table.add_column(column)
    for p in sorted(latest.values(), key=lambda p: -p["intent_score"])[:12]:
        top = p["top_features"][0]["feature"] if p["top_features"] else ""
        table.add_row(p["session_id"], p["persona"], f"{p['intent_score']:.3f}", p["intent_band"], top,
                      p["recommended_action"], str(p["events_seen"]), "yes" if labels[p["session_id"]] else "no")
    console.print(table)
    summary = Table(title=f"Personas of {len(latest)} replayed visits (label used only here, never streamed)")
    for column in ("persona", "visits", "mean intent", "bought"):
        summary.add_column(column)
    for persona in sorted({p["persona"] for p in latest.values()}):
        group = [p for p in latest.values() if p["persona"] == persona]
        bought = sum(labels[p["session_id"]] for p in group)
        summary.add_row(persona, str(len(group)), f"{sum(p['intent_score'] for p in group) / len(group):.3f}",
                        f"{bought / len(group):.0%}")
    console.print(summary)


def main() -> int:
    home = Path(".personastream/demo").resolve()
    shutil.rmtree(home, ignore_errors=True)
    broker = LocalBroker(home, port=free_port())
    conf = settings(home=home, broker=f"kafka://127.0.0.1:{broker.port}")
    env = {**os.environ, "PERSONASTREAM_HOME": str(home), "PERSONASTREAM_BROKER": conf.broker}
    worker = None
    try:
        console.print(f"[bold]1/4[/] starting Kafka {broker.version} on 127.0.0.1:{broker.port} …")
        broker.start()
        asyncio.run(ensure_topics(conf))
        frame = read_uci(SAMPLE).head(VISITS)
        catalog, records = uci_records(frame)
        console.print(f"[bold]2/4[/] replaying {VISITS} sample UCI visits ({len(records)} events) …")
        asyncio.run(seed_pages(conf.bootstrap, conf.pages_topic, catalog))
        asyncio.run(produce(conf.bootstrap, conf.events_topic, paced(records, None)))
        console.print("[bold]3/4[/] starting a Faust worker …")
        worker = subprocess.Popen([sys.executable, "-c", "from stream.cli import main; main()", "worker",
                                   "--web-port", str(free_port())], env=env, stdin=subprocess.DEVNULL,
                                  stdout=open(home / "worker.log", "ab"), stderr=subprocess.STDOUT)
        expected = Counter(r.key.decode() for r in records)
        started = time.monotonic()
        latest = asyncio.run(collect(conf.bootstrap, conf.personas_topic, expected, 180, worker))
        if worker.poll() is not None:
            console.print(f"[red]the worker exited with {worker.returncode}; see {home / 'worker.log'}")
        done = sum(latest.get(s, {}).get("events_seen") == n for s, n in expected.items())
        console.print(f"[bold]4/4[/] {done}/{len(expected)} visits fully scored in {time.monotonic() - started:.1f}s "
                      f"(worker start-up included)")
        show(latest, {f"uci-{i}": bool(v) for i, v in enumerate(frame["Revenue"])})
        return 0 if done == len(expected) else 1
    finally:
        if worker is not None:
            stop_process(worker)
        broker.stop()
        console.print("stopped the worker and the broker")


if __name__ == "__main__":
    sys.exit(main())
