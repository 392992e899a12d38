"""What each change bought: the same pre-loaded events through one worker of each given commit, in one run.

Each commit is checked out into a temporary git worktree; its workers import the code of that worktree
(``PYTHONPATH``) while this harness, the broker and the events stay the same. The rounds alternate the
commits (A B C, A B C, ...) so that a slow minute of a shared machine does not land on one of them only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Callable, Iterator, Sequence

import orjson

from bench import kafka, report, workload
from bench.rig import local_rig, sigterm_as_interrupt

BEGIN, END = "<!-- commits -->", "<!-- /commits -->"
REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def worktrees(refs: Sequence[str], home: Path) -> Iterator[list[tuple[str, str, Path]]]:
    """(ref, one-line subject, checkout) of each ref, removed afterwards."""
    made = []
    try:
        for i, ref in enumerate(refs):
            path = home / f"tree{i}"
            _git("worktree", "add", "--detach", str(path), ref)
            made.append((ref, _git("log", "-1", "--format=%h %s", ref), path))
        yield made
    finally:
        for _, _, path in made:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False,
                           capture_output=True)


def run(csv: Path, refs: Sequence[str], events: int, rounds: int, out: Path, json_out: Path,
        say: Callable[[str], None]) -> dict:
    home = Path(tempfile.mkdtemp(prefix="personastream-commits-"))
    started = time.monotonic()
    work = workload.build(csv, events)
    expected = Counter(r.key for r in work.records)
    runs: dict[str, list[dict]] = {ref: [] for ref in refs}
    try:
        with sigterm_as_interrupt(), worktrees(refs, home) as trees, local_rig(home) as rig:
            topic = "commits.events"
            first = rig.settings("c", topic)
            rig.topics(first)
            kafka.preload(rig.bootstrap, topic, work.records, lambda n=1: None)
            for round_ in range(rounds):
                for i, (ref, subject, path) in enumerate(trees):
                    conf = rig.settings(f"c{round_}x{i}", topic)
                    with _code_of(path):
                        result = kafka.throughput(rig, conf, work.catalog, expected, 1, lambda n=1: None)
                    runs[ref].append(result)
                    say(f"round {round_ + 1}/{rounds} {subject[:60]}: {result['events_per_s']:,.0f} ev/s, "
                        f"{result['sessions_complete']}/{result['sessions']} visits complete")
            subjects = {ref: subject for ref, subject, _ in trees}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    results = {"events": len(work.records), "rounds": rounds, "seconds": round(time.monotonic() - started, 1),
               "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine_cpus": os.cpu_count(),
               "commits": [{"ref": ref, "subject": subjects[ref], "runs": runs[ref],
                            "median_events_per_s": median(r["events_per_s"] for r in runs[ref])} for ref in refs]}
    json_out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    report.replace_section(out, BEGIN, END, render(results))
    return results


@contextmanager
def _code_of(path: Path) -> Iterator[None]:
    """Workers started meanwhile import ``stream`` and ``models`` from ``path`` (their working directory,
    first on their ``sys.path``)."""
    before, cwd = os.environ.get("PYTHONPATH"), Path.cwd()
    os.environ["PYTHONPATH"] = str(path)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(cwd)
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def render(r: dict) -> str:
    base = r["commits"][0]["median_events_per_s"]
    rows = [f"| `{c['subject'][:7]}` {c['subject'][8:][:110]} | "
            f"{', '.join(format(x['events_per_s'], ',.0f') for x in c['runs'])} | {c['median_events_per_s']:,.0f} | "
            f"{c['median_events_per_s'] / base:.2f}× | "
            f"{min(x['sessions_complete'] for x in c['runs']):,}/{c['runs'][0]['sessions']:,} |"
            for c in r["commits"]]
    return "\n".join([
        "## What each change bought (`personastream bench-commits`, one worker per commit, same events)",
        "",
        f"{r['finished_at']}, {r['machine_cpus']} CPUs, {r['seconds']:.0f} s. {r['events']:,} pre-loaded events "
        f"(UCI and synthetic visits), 4 partitions, through one fresh worker of each commit in turn, "
        f"{r['rounds']} rounds alternating the commits; first event to the last visit's final PersonaEvent. "
        "Each commit's worker runs its own code and default settings (batch size included). Raw numbers: "
        "[`benchmarks-commits.json`](benchmarks-commits.json).",
        "",
        "| commit | events/s per round | median | vs first | visits complete (worst round) |",
        "| --- | --- | ---: | ---: | ---: |",
        *rows,
    ])
