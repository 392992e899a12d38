"""Real-broker test harness: one local Kafka broker per test session, workers as subprocesses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from stream.kafka_io import poll_topic
from stream.tools.broker import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from stream.cli import main; main()"]


@dataclass
class Pipeline:
    """Isolated topic names, app id and home for one test on the shared broker."""

    bootstrap: str
    home: Path
    partitions: int = 4
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    workers: list[subprocess.Popen] = field(default_factory=list)
    collectors: list[subprocess.Popen] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    """extra PERSONASTREAM_* variables for every command and worker."""

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONASTREAM_")}
        env.update({
            "PERSONASTREAM_BROKER": f"kafka://{self.bootstrap}",
            "PERSONASTREAM_HOME": str(self.home),
            "PERSONASTREAM_APP_ID": f"ps-{self.name}",
            "PERSONASTREAM_EVENTS_TOPIC": f"{self.name}.events",
            "PERSONASTREAM_PERSONAS_TOPIC": f"{self.name}.personas",
            "PERSONASTREAM_DLQ_TOPIC": f"{self.name}.dlq",
            "PERSONASTREAM_PAGES_TOPIC": f"{self.name}.pages",
            "PERSONASTREAM_PARTITIONS": str(self.partitions),
            **self.settings,
        })
        return env

    def topic(self, kind: str) -> str:
        return self.env[f"PERSONASTREAM_{kind.upper()}_TOPIC"]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([*CLI, *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == 0, f"personastream {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def start_worker(self, *extra: str) -> subprocess.Popen:
        index = len(self.workers)
        log = open(self.home / f"worker-{index}.log", "ab")
        env = {**self.env, "PERSONASTREAM_HOME": str(self.home / f"w{index}")}
        port = free_port()
        process = subprocess.Popen([*CLI, "worker", "--web-port", str(port), "-l", "info", *extra],
                                   env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        process.web_port = port
        self.workers.append(process)
        return process

    def start_collector(self, **settings: str) -> subprocess.Popen:
        """Start ``personastream collector`` (with extra PERSONASTREAM_* ``settings``) and wait until it answers."""
        index = len(self.collectors)
        log = open(self.home / f"collector-{index}.log", "ab")
        process = subprocess.Popen([*CLI, "collector", "--port", str(port := free_port())],
                                   env={**self.env, **settings}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        process.web_port = port
        self.collectors.append(process)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"collector exited with {process.returncode}:\n"
                                     f"{self.collector_log(index)[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/tracker.js", timeout=5):
                    return process
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("the collector did not answer in 60 s") from None
                time.sleep(0.3)

    def collector_log(self, index: int = 0) -> str:
        return (self.home / f"collector-{index}.log").read_text(errors="replace")

    def web(self, process: subprocess.Popen, path: str = "/status", timeout: float = 120) -> bytes:
        """GET a worker's web view, waiting for its web server to come up."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_workers()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{process.web_port}{path}", timeout=5) as response:
                    return response.read()
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"worker web view {path} did not answer in {timeout}s") from None
                time.sleep(0.5)

    def status(self, process: subprocess.Popen) -> dict:
        return orjson.loads(self.web(process, "/status"))

    def wait_for(self, condition, what: str, timeout: float = 120):
        """Poll ``condition()`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not (found := condition()):
            self.check_workers()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.5)
        return found

    def check_workers(self) -> None:
        """Fail at once, with its log, if a worker that was not stopped has exited."""
        for index, process in enumerate(self.workers):
            if process.poll() is not None and not getattr(process, "stopped", False):
                raise AssertionError(f"worker {index} exited with {process.returncode}:\n"
                                     f"{self.worker_log(index)[-3000:]}")

    def worker_log(self, index: int = 0) -> str:
        return (self.home / f"worker-{index}.log").read_text(errors="replace")

    def stop_worker(self, process: subprocess.Popen, timeout: float = 30) -> None:
        process.stopped = True
        stop_process(process, timeout)

    def stop_all(self) -> None:
        for process in self.workers + self.collectors:
            self.stop_worker(process)

    def produce(self, topic: str, records: list[tuple[bytes | None, bytes]], partition: int | None = None) -> None:
        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=4 * 1024 * 1024)
            await producer.start()
            try:
                for key, value in records:
                    await producer.send(topic, value, key=key, partition=partition)
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(send())

    def consume_until(self, topic: str, done, timeout: float = 180) -> list[bytes]:
        """Read ``topic`` from the beginning until ``done(values)`` is true; fail after ``timeout``."""

        async def read() -> list[bytes]:
            values: list[bytes] = []
            deadline = time.monotonic() + timeout
            async with aclosing(poll_topic(self.bootstrap, topic, timeout_ms=300)) as polls:
                async for batch in polls:
                    values.extend(batch)
                    if done(values):
                        return values
                    self.check_workers()
                    if time.monotonic() > deadline:
                        raise AssertionError(f"timed out after {timeout}s reading {topic}: {len(values)} records")
            return values

        return asyncio.run(read())

    def produce_located(self, topic: str, records: list[tuple]) -> list[tuple[int, int]]:
        """Send ``(key, value)`` or ``(key, value, partition)`` records in order, each confirmed;
        return the ``(partition, offset)`` each record got, in the same order."""

        async def send() -> list[tuple[int, int]]:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=4 * 1024 * 1024,
                                        acks="all", enable_idempotence=True)
            await producer.start()
            try:
                pending = []
                for record in records:
                    key, value, partition = (*record, None)[:3]
                    pending.append(await producer.send(topic, value, key=key, partition=partition))
                await producer.flush()
                return [((meta := await future).partition, meta.offset) for future in pending]
            finally:
                await producer.stop()

        return asyncio.run(send())

    def read_records(self, topic: str) -> list:
        """Every record (key, value, partition, offset, ...) of every partition of ``topic``, from the
        beginning to the end offsets at the time of the call, in partition then offset order."""

        async def read() -> list:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                        max_partition_fetch_bytes=8 * 1024 * 1024)
            await consumer.start()
            try:
                partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                end = await consumer.end_offsets(partitions)
                out = {tp: [] for tp in partitions}
                deadline = time.monotonic() + 60
                while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"could not read {topic} to its end offsets {end}")
                    for tp, batch in (await consumer.getmany(timeout_ms=500, max_records=10000)).items():
                        out[tp].extend(r for r in batch if r.offset < end[tp])
                return [r for tp in partitions for r in out[tp]]
            finally:
                await consumer.stop()

        return asyncio.run(read())

    def broker_topics(self) -> list[str]:
        """Every topic on the broker (other tests' topics included)."""

        async def names() -> list[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                return sorted(await admin.list_topics())
            finally:
                await admin.close()

        return asyncio.run(names())

    def partition_count(self, topic: str) -> int:
        async def count() -> int:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
            await consumer.start()
            try:
                return len(await _partitions(consumer, topic))
            finally:
                await consumer.stop()

        return asyncio.run(count())

    def create_topic(self, topic: str, partitions: int) -> None:
        async def create() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(topic, partitions, 1)])
            finally:
                await admin.close()

        asyncio.run(create())

    def lag(self, topic: str, group: str | None = None) -> dict[int, int]:
        """partition -> end offset minus the offset committed by the app's consumer group (``group``)."""

        async def compute() -> dict[int, int]:
            group_id = group or self.env["PERSONASTREAM_APP_ID"]
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
            await admin.start()
            await consumer.start()
            try:
                partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
                end = await consumer.end_offsets(partitions)
                committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
                return {tp.partition: end[tp] - max(committed[tp].offset, 0) if tp in committed else end[tp]
                        for tp in partitions}
            finally:
                await consumer.stop()
                await admin.close()

        return asyncio.run(compute())

    def metric(self, process: subprocess.Popen, name: str) -> float:
        """The value of one unlabelled Prometheus sample of a worker's /metrics (0 if absent)."""
        for line in self.web(process, "/metrics").decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{}"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def agent_crashes(self) -> list[str]:
        """Log lines of agents or tasks that crashed inside a worker that is still running (Faust logs
        ``Crashed reason=...`` and keeps the process up, so check_workers does not see it)."""
        lines = []
        for index in range(len(self.workers)):
            lines += [f"worker {index}: {line}" for line in self.worker_log(index).splitlines()
                      if "Crashed reason=" in line]
        return lines

    def diagnose(self, process: subprocess.Popen) -> str:
        """For a failure message: the worker's personastream metrics, the lag of the events topic and the
        Python stacks of the worker (py-spy, if installed)."""
        parts = []
        try:
            parts.append(f"events lag by partition: {self.lag(self.topic('events'))}")
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            parts.append(f"lag unavailable: {exc!r}")
        if process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{process.web_port}/metrics", timeout=5) as response:
                    parts += [line for line in response.read().decode().splitlines()
                              if line.startswith("personastream_") and "_bucket" not in line]
            except OSError as exc:
                parts.append(f"/metrics unavailable: {exc!r}")
            spy = Path(sys.executable).with_name("py-spy")
            if spy.exists():
                dump = subprocess.run([str(spy), "dump", "--pid", str(process.pid)], capture_output=True, text=True,
                                      timeout=60)
                parts.append(f"py-spy dump of worker {process.pid}:\n{dump.stdout[-8000:]}{dump.stderr[-500:]}")
        return "\n".join(parts)

    def scored(self, expected: dict[str, int]) -> Callable[[list[bytes]], bool]:
        """A :meth:`consume_until` check over PersonaEvents: every session of ``expected`` (session id ->
        events) scored with all its events, or on to a later visit; raises if an agent crashed."""
        def check(values: list[bytes]) -> bool:
            if crashes := self.agent_crashes():
                raise AssertionError("an agent crashed:\n" + "\n".join(crashes))
            newest = {}
            for value in values:
                event = orjson.loads(value)
                newest[event["session_id"]] = event
            return all(sid in newest and (newest[sid]["events_seen"] >= n or newest[sid]["visit"] > 0)
                       for sid, n in expected.items())
        return check

    def drain(self, worker: subprocess.Popen, expected: Mapping[str, int], timeout: float,
              lag_timeout: float) -> dict[str, dict]:
        """Wait until every session of ``expected`` (session id -> its events) has a PersonaEvent with all of
        them (or of a later visit), then until the events topic has no lag; the newest PersonaEvent per
        session. Fails on a crashed agent, or with ``worker``'s log and diagnosis on a timeout."""
        personas = self.topic("personas")
        try:
            self.consume_until(personas, self.scored(expected), timeout=timeout)
            self.wait_for(lambda: not sum(self.lag(self.topic("events")).values()),
                          "consumer lag 0 on the events topic", timeout=lag_timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker {self.workers.index(worker)} log ---\n"
                                 f"{self.worker_log(self.workers.index(worker))[-5000:]}\n"
                                 f"--- diagnosis ---\n{self.diagnose(worker)}") from None
        return last_by_session(self.read_records(personas))

    def kill_worker(self, process: subprocess.Popen) -> None:
        """SIGKILL a worker (no clean shutdown) and mark it stopped, so check_workers accepts its exit."""
        process.stopped = True
        if process.poll() is None:
            process.kill()
        process.wait(30)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    cluster = await consumer._client.fetch_all_metadata()
    numbers = cluster.partitions_for_topic(topic)
    if not numbers:
        raise AssertionError(f"topic {topic} does not exist")
    return set(numbers)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the Java client does)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def key_on_partition(prefix: str, partition: int, partitions: int) -> str:
    """The first ``<prefix>-<i>`` that the default partitioner sends to ``partition``."""
    i = 0
    while partition_of(f"{prefix}-{i}".encode(), partitions) != partition:
        i += 1
    return f"{prefix}-{i}"


def last_by_session(records) -> dict[str, dict]:
    """The newest PersonaEvent per session: the last one (by offset) of its key in its partition."""
    last: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = orjson.loads(record.value)
        last[event["session_id"]] = event
    return last


def unexact_visits(newest: Mapping[str, dict], expected: Mapping[str, int]) -> dict[str, tuple]:
    """session -> (visit, events_seen, expected events) of each session whose newest PersonaEvent is not
    its first visit with all of its events."""
    def final(sid: str) -> tuple:
        event = newest.get(sid, {})
        return event.get("visit"), event.get("events_seen")

    return {sid: (*final(sid), n) for sid, n in expected.items() if final(sid) != (0, n)}


def latest_by_session(values: list[bytes]) -> dict[str, dict]:
    """The PersonaEvent with the most events seen, per session."""
    latest: dict[str, dict] = {}
    for value in values:
        event = orjson.loads(value)
        known = latest.get(event["session_id"])
        if known is None or (event["visit"], event["events_seen"]) >= (known["visit"], known["events_seen"]):
            latest[event["session_id"]] = event
    return latest
