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


def start(pid: int, seconds: float, out: Path, delay: float = 0.0) -> subprocess.Popen | None:
    """Sample every thread of process ``pid`` for ``seconds`` after ``delay`` seconds into ``out`` (py-spy
    raw format), or None without py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
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
