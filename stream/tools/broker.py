"""A single-node Apache Kafka broker (KRaft, combined broker+controller) for development and tests.

The broker jars come from Maven Central through Maven (``mvn dependency:copy-dependencies``) into a
cache directory; all runtime state lives under ``<home>/kafka``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

RESOURCES = files("stream.tools") / "kafka"


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


def jar_cache(version: str) -> Path:
    root = os.environ.get("PERSONASTREAM_KAFKA_CACHE") or Path.home() / ".cache" / "personastream"
    return Path(root) / f"kafka-{version}"


def fetch(version: str) -> Path:
    """Copy the broker jars for ``version`` into the cache (once); return the jar directory."""
    jars = jar_cache(version) / "jars"
    if (jars / ".complete").is_file():
        return jars
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise BrokerError("Maven (mvn) and Java 17 are needed to fetch and run the local Kafka broker")
    jars.mkdir(parents=True, exist_ok=True)
    pom = jar_cache(version) / "pom.xml"
    pom.write_text((RESOURCES / "pom.xml").read_text())
    command = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={jars}", f"-Dkafka.version={version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"fetching Kafka {version} jars failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    if not any(jars.glob(f"kafka_2.13-{version}.jar")):
        raise BrokerError(f"Maven finished but kafka_2.13-{version}.jar is not in {jars}")
    (jars / ".complete").write_text(version)
    return jars


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop a child process by its PID: SIGTERM, then SIGKILL if it is still running after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


JVM_PERFORMANCE_OPTS = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
                        "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true")
"""The JVM options Kafka's own start scripts give a broker (``KAFKA_JVM_PERFORMANCE_OPTS``), as its heap (1 GB,
fixed: ``KAFKA_HEAP_OPTS``). With a heap growing from 128 MB, G1 ran bursts of young and concurrent
collections under load that took the 2 CPUs from the workers for a second or two."""


@dataclass
class LocalBroker:
    home: Path
    port: int = 9092
    version: str = "4.1.1"
    heap: str = "1g"

    @property
    def root(self) -> Path:
        return Path(self.home) / "kafka"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        return f"running (pid {pid}, 127.0.0.1:{self.port})" if port_open(self.port) else f"starting (pid {pid})"

    def _properties(self, controller_port: int) -> str:
        data = self.root / "data"
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data}",
            "auto.create.topics.enable=false",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            "",
        ])

    def start(self, timeout: float = 90.0) -> int:
        """Fetch jars if needed, format storage once, start the broker and wait until it answers."""
        if (pid := self.pid()) is not None:
            return pid
        jars = fetch(self.version)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        props = self.root / "server.properties"
        props.write_text(self._properties(free_port()))
        classpath = f"{jars}/*"
        if not (self.root / "data" / "meta.properties").exists():
            result = subprocess.run(["java", "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
                                     "-t", uuid.uuid4().hex[:22], "-c", str(props)], capture_output=True, text=True)
            if result.returncode != 0:
                raise BrokerError(f"formatting Kafka storage under {self.root} failed:\n{result.stdout}{result.stderr}")
        log4j = self.root / "log4j2.properties"
        log4j.write_text((RESOURCES / "log4j2.properties").read_text())
        with open(self.root / "logs" / "stdout.log", "ab") as out:
            process = subprocess.Popen(
                ["java", f"-Xmx{self.heap}", f"-Xms{self.heap}", *JVM_PERFORMANCE_OPTS,
                 f"-Dkafka.logs.dir={self.root / 'logs'}", f"-Dlog4j2.configurationFile={log4j}",
                 "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(f"{process.pid} {self.port}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(f"Kafka broker exited with code {process.returncode}; see {self.root / 'logs'}")
            if port_open(self.port):
                return process.pid
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"Kafka broker did not answer on 127.0.0.1:{self.port} within {timeout:.0f}s")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker by its PID (SIGTERM, then SIGKILL); True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                _reap(pid)
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status of a child process so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
