"""A worker's floors: ``personastream worker`` with less of the pipeline, to show what bounds one worker.

A floor worker is the shipped worker (Faust's fetch loop, the intake, batches, acknowledgements and
commits) with less of the session processing, one of :data:`FLOORS`:

- ``acknowledge`` takes each batch and returns no output: what Faust and the Kafka client cost;
- ``validate`` also parses and validates every event (:func:`schemas.events.parse_event`: orjson,
  pydantic and the privacy rule), as the processor does first, and drops it;
- ``sessionize`` processes every batch as shipped but scores no visit: sessions, state and its
  changelog, page statistics; no intent score, explanation, persona, decision or PersonaEvent.

:func:`rate` runs one, fresh, on pre-loaded events and times it by its own ``personastream_events_total``
on ``/metrics`` (a floor publishes nothing to wait for).
"""

from __future__ import annotations

import sys
import time
import urllib.request
from typing import Callable, Mapping, Sequence

from bench.kafka import start_pipeline
from bench.rig import Rig, cpu_seconds, parse_metrics
from schemas.events import EventError, parse_event
from stream.config import Settings
from stream.scoring import Scorer
from stream.sessions import BatchResult, Consumed, SessionProcessor


def acknowledge(processor: SessionProcessor, records: Sequence[Consumed], states: Mapping) -> BatchResult:
    """Nothing: the batch is acknowledged with no output."""
    return BatchResult()


def validate(processor: SessionProcessor, records: Sequence[Consumed], states: Mapping) -> BatchResult:
    """Every record parsed and validated as the processor does first; no output."""
    for record in records:
        try:
            parse_event(record.value)
        except EventError:
            pass
    return BatchResult()


def no_scores(scorer: Scorer, visits: Sequence) -> dict[bytes, bytes]:
    """No visit scored, no PersonaEvent."""
    return {}


FLOORS: dict[str, Callable[[], None]] = {
    "acknowledge": lambda: setattr(SessionProcessor, "process", acknowledge),
    "validate": lambda: setattr(SessionProcessor, "process", validate),
    "sessionize": lambda: setattr(Scorer, "score", no_scores),
}
"""Floor name -> what it replaces in the worker's code before the worker starts."""


def main(floor: str) -> None:
    """``personastream worker`` (its command line as usual) with less of the pipeline: ``floor``."""
    FLOORS[floor]()
    from stream.cli import main as cli

    cli()


def command(floor: str) -> list[str]:
    """The command line of a floor worker, without the ``worker`` subcommand."""
    return [sys.executable, "-c", f"from bench.floors import main; main({floor!r})"]


def events_counted(port: int) -> int:
    """``personastream_events_total`` of the worker serving ``/metrics`` on ``port``; 0 until it answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    return int(parse_metrics(text).get("personastream_events_total", 0))


def rate(rig: Rig, conf: Settings, catalog: list[tuple[bytes, bytes]], total: int, floor: str,
         timeout: float = 300.0, poll_s: float = 0.1) -> dict:
    """One fresh ``floor`` worker, with the page ``catalog`` seeded as for the pipeline runs, over the ``total``
    events pre-loaded in ``conf.events_topic``: events/s after its first batch is counted until the last, and
    its CPU time per event (every thread) over that span; both None if that span holds less than half of the
    events (too few to time)."""
    start_pipeline(rig, conf, catalog, 1, command(floor))
    index = rig.started - 1
    port, pid = rig.web_ports[index], rig.workers[index].pid
    deadline = time.monotonic() + timeout
    try:
        counted = 0
        while counted < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {floor} floor worker counted {counted}/{total} events in {timeout:.0f} s")
            rig.check()
            time.sleep(poll_s)
            now = events_counted(port)
            if now and not counted:
                first, started, cpu = now, time.monotonic(), cpu_seconds(pid)
            counted = now
        seconds, cpu, timed = time.monotonic() - started, cpu_seconds(pid) - cpu, counted - first
    finally:
        rig.stop_all()
    if timed < total / 2:  # most were taken before /metrics answered: too few events to time
        return {"floor": floor, "events": total, "timed_events": timed, "events_per_s": None,
                "worker_cpu_us_per_event": None}
    return {"floor": floor, "events": total, "timed_events": timed, "events_per_s": round(timed / seconds, 1),
            "worker_cpu_us_per_event": round(cpu / timed * 1e6, 1)}
