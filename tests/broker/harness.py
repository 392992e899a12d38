"""Real-broker test harness: one local Kafka broker per test session, workers as subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from stream.tools.broker import free_port
from stream.kafka_io import poll_topic

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
                raise AssertionError(f"worker {index} exited with {process.returncode}:\n{self.worker_log(index)[-3000:]}")

    def worker_log(self, index: int = 0) -> str:
        return (self.home / f"worker-{index}.log").read_text(errors="replace")

    def stop_worker(self, process: subprocess.Popen, timeout: float = 30) -> None:
        process.stopped = True
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def stop_all(self) -> None:
        for process in self.workers:
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


def latest_by_session(values: list[bytes]) -> dict[str, dict]:
    """The PersonaEvent with the most events seen, per session."""
    latest: dict[str, dict] = {}
    for value in values:
        event = orjson.loads(value)
        known = latest.get(event["session_id"])
        if known is None or (event["visit"], event["events_seen"]) >= (known["visit"], known["events_seen"]):
            latest[event["session_id"]] = event
    return latest
