"""A fresh local broker, per-run topic names and Faust worker subprocesses, all stopped by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from stream.config import Settings
from stream.tools.broker import LocalBroker, free_port
from stream.topics import ensure_topics

CLI = [sys.executable, "-c", "from stream.cli import main; main()"]
ENV_FIELDS = ("broker", "app_id", "events_topic", "personas_topic", "dlq_topic", "pages_topic", "partitions",
              "batch_size", "batch_window_s", "top_features", "session_gap_s", "session_retain_s",
              "collect_requests_per_s", "gc_tuning", "fetch_min_bytes", "fetch_max_wait_ms", "page_window_s",
              "max_page_counters")


def _stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU time in a /proc ``stat`` file, in seconds (OSError if the process or thread ended)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (from /proc/<pid>/stat), in seconds."""
    try:
        return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))
    except OSError:
        return float("nan")


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU time of each thread of ``pid`` (thread id -> seconds, from /proc/<pid>/task)."""
    times = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            times[int(task.name)] = _stat_cpu_seconds(task / "stat")
        except OSError:
            continue  # the thread ended
    return times


def parse_metrics(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page: name -> value."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def local_rig(home: Path) -> Iterator["Rig"]:
    """A :class:`Rig` on a single-node broker under ``home / "broker"`` on a free port; its workers and
    the broker are stopped by PID on exit, error or Ctrl-C."""
    broker = LocalBroker(home / "broker", port=free_port())
    try:
        broker.start()
        rig = Rig(f"127.0.0.1:{broker.port}", home, broker_pid=broker.pid())
        try:
            yield rig
        finally:
            rig.stop_all()
    finally:
        broker.stop()


@dataclass
class Rig:
    """Worker processes for bench runs on one broker; ``stop_all`` ends every one it started."""

    bootstrap: str
    home: Path
    broker_pid: int | None = None
    """The local broker's process, for its CPU time (None: not known)."""
    workers: dict[int, subprocess.Popen] = field(default_factory=dict)
    web_ports: dict[int, int] = field(default_factory=dict)
    """worker index -> its Faust web port (/metrics, /status)."""
    started: int = 0

    def settings(self, run: str, events_topic: str, partitions: int = 4) -> Settings:
        """Settings of run ``run``: its own app id and output/page topics, on ``events_topic``."""
        return Settings(broker=f"kafka://{self.bootstrap}", home=self.home / run, app_id=f"bench-{run}",
                        events_topic=events_topic, personas_topic=f"{run}.personas", dlq_topic=f"{run}.dlq",
                        pages_topic=f"{run}.pages", partitions=partitions)

    def topics(self, conf: Settings) -> None:
        asyncio.run(ensure_topics(conf))

    def start_worker(self, conf: Settings, command: Sequence[str] = CLI) -> subprocess.Popen:
        """A ``personastream worker`` process for ``conf`` (``command`` runs the CLI); stop it with :meth:`stop_all`."""
        index = self.started
        self.started += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONASTREAM_")}
        env.update({f"PERSONASTREAM_{name.upper()}": str(getattr(conf, name)) for name in ENV_FIELDS})
        env["PERSONASTREAM_HOME"] = str(conf.home / f"w{index}")
        if "models" in conf.model_fields_set:  # set for this run only: other commits' CLIs keep their own default
            env["PERSONASTREAM_MODELS"] = str(conf.models)
        conf.home.mkdir(parents=True, exist_ok=True)
        self.web_ports[index] = port = free_port()
        with open(self.log(index), "ab") as log:
            process = subprocess.Popen([*command, "worker", "--web-port", str(port), "-l", "warn"], env=env,
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self.workers[index] = process
        return process

    def start_collector(self, conf: Settings) -> tuple[subprocess.Popen, int]:
        """A ``personastream collector`` process for ``conf``; stop it with :meth:`stop_process`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONASTREAM_")}
        env.update({f"PERSONASTREAM_{name.upper()}": str(getattr(conf, name)) for name in ENV_FIELDS})
        port = free_port()
        with open(self.home / "collector.log", "ab") as log:
            process = subprocess.Popen([*CLI, "collector", "--port", str(port)], env=env, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return process, port

    def log(self, index: int) -> Path:
        return self.home / f"worker-{index}.log"

    def check(self) -> None:
        """Raise, with the end of its log, if a running worker has exited."""
        for index, process in self.workers.items():
            if process.poll() is not None:
                tail = self.log(index).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker {index} (pid {process.pid}) exited with {process.returncode}:\n{tail}")

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM every started worker by PID, SIGKILL those still running after ``timeout``."""
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.workers.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.workers.clear()
        self.web_ports.clear()
