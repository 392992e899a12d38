"""Where a running worker's time goes: py-spy samples of the worker process, summarized."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"(?P<name>.*) \((?P<file>.*?)(?::\d+)?\)$")
_THREAD = re.compile(r"thread \((?:0x)?[0-9a-fA-F]+\): ?(?P<name>.*)$")
RATE = 100
"""Samples per second and thread."""
WAITING = ("EpollSelector.select (selectors.py)",)
"""Frames of a thread waiting for I/O that py-spy does not count as idle: left out of the busy time."""


_DUMPED = re.compile(r'^Thread (?P<tid>0x[0-9a-fA-F]+|\d+) \([^)]*\): "(?P<name>[^"]*)"')
ROLES = {"MainThread": "event loop", "processor_0": "processor", "treeshap_0": "TreeSHAP"}
"""What the worker's Python threads do (Faust's consumer thread is told by its stack: it runs mode's threads)."""


def _py_spy() -> str | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return spy if Path(spy).exists() else None


def thread_roles(pid: int) -> dict[int, str]:
    """Thread id -> role (:data:`ROLES`, ``consumer``, or the thread's name) of every Python thread of a
    worker, from one ``py-spy dump``; empty without py-spy."""
    spy = _py_spy()
    if spy is None:
        return {}
    dump = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30).stdout
    roles, tid = {}, None
    for line in dump.splitlines():
        found = _DUMPED.match(line)
        if found:
            tid = int(found["tid"], 0)
            roles[tid] = ROLES.get(found["name"], found["name"])
        elif tid is not None and "mode/threads.py" in line:
            roles[tid] = "consumer"
    return roles


def start(pid: int, seconds: float, out: Path, delay: float = 0.0) -> subprocess.Popen | None:
    """Sample every thread of process ``pid`` for ``seconds`` after ``delay`` seconds into ``out`` (py-spy
    raw format), or None without py-spy."""
    spy = _py_spy()
    if spy is None:
        return None
    record = [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(RATE), "-f", "raw", "--threads",
              "-o", str(out), "--nonblocking"]
    return subprocess.Popen(["sh", "-c", f'sleep {delay:g} && exec "$0" "$@"', *record],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _short(frame: str) -> str:
    found = _FRAME.match(frame)
    if not found:
        return frame
    path = found["file"].split("site-packages/")[-1]
    return f"{found['name']} ({path.split('/work/main/')[-1].split('/personastream/')[-1]})"


def summarize(raw: Path, seconds: float, top: int = 6) -> dict:
    """Per Python thread, busiest first: the share of the ``seconds`` sampled it was busy (running Python
    or a C call, or waiting for the GIL; not idle or in :data:`WAITING`), and the ``top`` frames that
    time was spent in (self time)."""
    threads: dict[str, Counter[str]] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not stack or not count.isdigit() or len(frames) < 2:
            continue
        named = _THREAD.match(frames[0])
        thread = named["name"] if named and named["name"] else "unnamed"
        leaf = _short(frames[-1])
        if leaf not in WAITING:
            threads.setdefault(thread, Counter())[leaf] += int(count)
    possible = seconds * RATE
    busiest = sorted(threads.items(), key=lambda item: -sum(item[1].values()))
    return {"seconds": seconds, "rate": RATE, "threads": [
        {"thread": name, "share": round(sum(leaves.values()) / possible, 3),
         "top": [{"frame": f, "share": round(n / sum(leaves.values()), 3)} for f, n in leaves.most_common(top)]}
        for name, leaves in busiest]}
