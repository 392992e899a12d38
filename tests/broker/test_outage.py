"""A broker outage under load, on a broker of the test's own: the worker waits for the broker without
spinning (an idle worker uses 1-3 % of a CPU), and carries on by itself when it is back."""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request

import orjson
import pytest

from stream.tools.broker import LocalBroker, free_port
from tests.broker.harness import Pipeline
from tests.broker.test_web import visit_events

pytestmark = pytest.mark.kafka

OUTAGE_S = 60.0
SETTLED_AFTER_S = 15
"""Records handed to the producer before the outage was noticed wait up to PRODUCE_TIMEOUT_S (10 s) for a leader,
with the Kafka client asking for metadata without back-off meanwhile; then the worker only waits."""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def post_events_until(port: int, stop: threading.Event) -> None:
    """POST a small visit to the worker's /collect again and again (each waits while the broker is away)."""
    n = 0
    while not stop.is_set():
        body = orjson.dumps(visit_events(f"tokLoad{n}", 4))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/collect", data=body,
                                         headers={"Content-Type": "text/plain"})
        try:
            urllib.request.urlopen(request, timeout=5).read()
        except (OSError, urllib.error.HTTPError):
            pass
        n += 1


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test alone (it is stopped and started again), stopped by PID at the end."""
    broker = LocalBroker(tmp_path / "broker", port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_worker_waits_for_the_broker_without_spinning(own_broker, tmp_path):
    pipeline = Pipeline(bootstrap=f"127.0.0.1:{own_broker.port}", home=tmp_path / "pipeline")
    pipeline.home.mkdir()
    stop = threading.Event()
    load = []
    try:
        pipeline.cli("topics")
        events = [(f"tokBacklog{i}".encode(), orjson.dumps(event)) for i in range(10_000)
                  for event in visit_events(f"tokBacklog{i}", 10)]
        pipeline.produce(pipeline.topic("events"), events)
        worker = pipeline.start_worker()
        pipeline.wait_for(lambda: "Worker]: Ready" in pipeline.worker_log(0), "the worker to be ready")
        load = [threading.Thread(target=post_events_until, args=(worker.web_port, stop)) for _ in range(8)]
        for thread in load:
            thread.start()
        time.sleep(1)  # the worker is busy with the backlog and the requests
        own_broker.stop()
        before, started = cpu_seconds(worker.pid), time.monotonic()
        per_second = []
        while time.monotonic() - started < OUTAGE_S:
            last = cpu_seconds(worker.pid)
            time.sleep(1)
            per_second.append(round(cpu_seconds(worker.pid) - last, 2))
        share = (cpu_seconds(worker.pid) - before) / (time.monotonic() - started)
        stop.set()
        for thread in load:
            thread.join(10)
        settled = per_second[SETTLED_AFTER_S:]
        assert sum(settled) / len(settled) < 0.1, (
            f"the worker used {sum(settled) / len(settled):.0%} of a CPU from {SETTLED_AFTER_S} s into a "
            f"{OUTAGE_S:.0f} s outage ({share:.0%} over all of it); CPU seconds per second: {per_second}")

        own_broker.start()
        pipeline.produce(pipeline.topic("events"), [(b"tokAfter", orjson.dumps(event))
                                                    for event in visit_events("tokAfter", 3)])
        pipeline.consume_until(pipeline.topic("personas"), lambda values: any(
            orjson.loads(value)["session_id"] == "tokAfter" for value in values), timeout=120)
        pipeline.check_workers()
    finally:
        stop.set()
        for thread in load:
            thread.join(10)
        pipeline.stop_all()
