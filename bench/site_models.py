"""Own-traffic models in the bench: what ``personastream train --events`` costs, and the events a site
model and the shipped UCI model are compared on through the broker.

A simulated shop (``tools.shopsim``, :data:`SHOP_SEED`) records about ``events`` events; the training
command runs on them as a subprocess, measured alone (:func:`run_measured`: CPU from its own rusage,
``os.wait4``, peak RSS from its ``VmHWM``; not this process's nor the broker's). Later visits of the
same shop are the serving workload, the same events for both models.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import orjson

from bench.rig import CLI
from stream.tools.replay import Outgoing
from tools.shopsim import ShopConfig, simulate

SHOP_SEED = 101
"""The simulated shop (``ShopConfig.random``), one the product was not tuned on."""
EVENTS_PER_VISIT = 20.5
"""Mean events per visit of shop 101 (90,194 events of 4,400 visits)."""
TRAIN_START = datetime(2026, 9, 1, tzinfo=timezone.utc)
TRAIN_DAYS = 28.0
SERVE_SEED = SHOP_SEED + 1
"""Seed of the serving visits: the same shop, visits after the training period."""


@dataclass(frozen=True)
class Measured:
    returncode: int
    wall_s: float
    cpu_s: float
    """user + system CPU time of the process (and of any child it waited for)."""
    peak_rss_bytes: int
    """the process's VmHWM, sampled while it ran (see :func:`run_measured`)."""


def run_measured(command: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None,
                 timeout: float = 7200.0, poll_s: float = 0.02) -> Measured:
    """Run ``command`` and measure that process alone: wall time; CPU time from its own rusage (``os.wait4`` on
    its PID: ``RUSAGE_CHILDREN`` would add every other child this process reaped, the bench's workers and broker
    included); peak RSS from its ``VmHWM``, read every ``poll_s`` while it runs. Not ``ru_maxrss``: on Linux a
    child's keeps the resident size of the parent it was forked from, which in the bench is the larger.
    Killed by PID on timeout or interruption."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    try:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            status, usage, peak = _wait4(process.pid, started + timeout, poll_s)
        except BaseException:
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    finally:
        if log is not None:
            out.close()
    return Measured(process.returncode, round(wall, 2), round(usage.ru_utime + usage.ru_stime, 2), peak)


def high_water_rss(pid: int) -> int:
    """``VmHWM`` of ``pid``: the peak resident set of its program since it was exec'd, in bytes (0 once it has
    exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _wait4(pid: int, deadline: float, poll_s: float) -> tuple[int, resource.struct_rusage, int]:
    peak = 0
    while True:
        peak = max(peak, high_water_rss(pid))
        reaped, status, usage = os.wait4(pid, os.WNOHANG)
        if reaped == pid:
            return status, usage, peak
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise TimeoutError(f"process {pid} still running at its deadline")
        time.sleep(poll_s)


def write_shop_events(path: Path, events: int, seed: int = SHOP_SEED, start: datetime = TRAIN_START,
                      days: float = TRAIN_DAYS) -> dict:
    """The events of about ``events / EVENTS_PER_VISIT`` whole visits of shop ``seed`` as JSONL."""
    visits = max(1, math.ceil(events / EVENTS_PER_VISIT))
    written = 0
    with path.open("wb") as out:
        for event in simulate(ShopConfig.random(seed), visits, start, seed, days):
            out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
            written += 1
    return {"events": written, "visits": visits, "shop_seed": seed, "days": days}


def training_cost(home: Path, events: int, command: Sequence[str] = CLI) -> dict:
    """Simulate the shop's recorded events into ``home``, then time ``personastream train --events FILE --out
    DIR`` on them; the model directory stays in ``home / "site-models"``."""
    home.mkdir(parents=True, exist_ok=True)
    source, models = home / "shop-events.jsonl", home / "site-models"
    shop = write_shop_events(source, events)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONASTREAM_")}
    env["PERSONASTREAM_HOME"] = str(home / "train-home")
    log = home / "train.log"
    run = run_measured([*command, "train", "--events", str(source), "--out", str(models)], env, log)
    if run.returncode != 0:
        raise RuntimeError(f"personastream train exited with {run.returncode}:\n"
                           + log.read_text(errors="replace")[-3000:])
    meta = orjson.loads((models / "intent.json").read_bytes())
    return {**shop, "models": str(models), "wall_s": run.wall_s, "cpu_s": run.cpu_s,
            "peak_rss_bytes": run.peak_rss_bytes, "model_version": meta["version"],
            "feature_set": meta["feature_set"], "training_visits": meta["training_data"]["visits"],
            "buying_visits": meta["training_data"]["buying_visits"], "trees": meta["training"]["rounds"],
            "validation_visits": meta["validation"]["visits"],
            "validation_roc_auc_at_50pct": round(meta["validation"]["roc_auc_at_50pct"], 4)}


def serving_events(events: int, train_days: float = TRAIN_DAYS, train_events: int | None = None,
                   gap_s: float = 1800.0) -> list[Outgoing]:
    """The first ``events`` events of later visits of the same shop (from the day after the training
    period, arriving at about the training period's rate), keyed by session id, in time order; without
    the few visits paused for the gap or longer (a worker splits those, so their final ``events_seen``
    would not be their number of events here)."""
    per_day = (train_events or events) / train_days
    spare = 1.5  # simulate half as many visits again, over as many more days, and keep the first ``events``
    days = max(0.25, spare * events / per_day)
    start = TRAIN_START + timedelta(days=math.ceil(train_days) + 1)
    records = []
    for event in simulate(ShopConfig.random(SHOP_SEED), math.ceil(spare * events / EVENTS_PER_VISIT), start,
                          SERVE_SEED, days):
        ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
        records.append(Outgoing(event["session_id"].encode(), orjson.dumps(event), ts))
        if len(records) == events:
            break
    split = split_sessions(records, gap_s)
    return [record for record in records if record.key not in split]


def split_sessions(records: Iterable[Outgoing], gap_s: float) -> set[bytes]:
    """Sessions whose consecutive events are ``gap_s`` or more apart in event time (a worker would end
    the visit there)."""
    last: dict[bytes, float] = {}
    split: set[bytes] = set()
    for record in records:
        if record.key in last and record.ts - last[record.key] >= gap_s:
            split.add(record.key)
        last[record.key] = record.ts
    return split


def expected(records: Iterable[Outgoing]) -> Counter[bytes]:
    return Counter(record.key for record in records)
