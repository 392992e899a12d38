"""Where a running worker's time goes: py-spy samples of the worker process, summarized."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"(?P<name>.*) \((?P<file>.*?)(?::\d+)?\)$")
ROOT_SHARE = 0.6
"""Frames on more than this share of samples (the event loop, the CLI) say nothing and are left out."""


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    """Sample process ``pid`` for ``seconds`` into ``out`` (py-spy raw format), or None without py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw",
                             "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _short(frame: str) -> str:
    found = _FRAME.match(frame)
    if not found:
        return frame
    path = found["file"].split("site-packages/")[-1]
    return f"{found['name']} ({path.split('/work/main/')[-1].split('/personastream/')[-1]})"


def summarize(raw: Path, top: int = 20) -> dict:
    """Share of samples each frame was on the stack for (inclusive), the busiest ``top`` first."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        for frame in {_short(f) for f in stack.split(";") if f}:
            inclusive[frame] += n
    rows = [(frame, n / total) for frame, n in inclusive.most_common() if total and n / total <= ROOT_SHARE]
    return {"samples": total, "frames": [{"frame": f, "share": round(s, 3)} for f, s in rows[:top]]}
