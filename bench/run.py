"""The bench phases in order: workload, offline measurements, then everything through a fresh broker."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import floors, kafka, offline, report, site_models, spy, workload
from bench.rig import Rig, local_rig, sigterm_as_interrupt
from models.directory import SHIPPED, ModelDirectory
from stream import gc_pauses
from stream.config import settings

SHORT_WINDOW_S = 0.02
"""Batch window of the extra latency run (the worker's default is 0.03 s)."""
FAUST_FETCH = {"fetch_min_bytes": 1, "fetch_max_wait_ms": 1500}
"""What Faust's consumer asks the broker for: answer with the first byte, or after 1.5 s."""
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    csv: Path
    out: Path
    json_out: Path
    command: str
    events: int = 1_000_000
    rate: float = 5000.0
    latency_s: float = 20.0
    memory_sessions: int = 1_000_000
    offline_events: int = 96_000
    partitions: int = 4
    ablation_events: int = 200_000
    own_events: int = 400_000
    """events of the simulated shop's later visits that the site and the UCI model are compared on"""
    keep: bool = False


QUICK = {"events": 100_000, "latency_s": 8.0, "memory_sessions": 100_000, "offline_events": 32_000,
         "ablation_events": 50_000, "own_events": 100_000}
WORKER_ABLATIONS = (("as shipped", {}), ("batches of 2,000 (the default before)", {"batch_size": 2000}),
                    ("no TreeSHAP explanations (`TOP_FEATURES=0`)", {"top_features": 0}),
                    ("CPython's default garbage collection (`GC_TUNING=false`)", {"gc_tuning": False}))
"""Worker settings compared through the broker, one worker each, on the same pre-loaded events."""


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def run(opts: Options, console: Console) -> report.Results:
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="personastream-bench-"))
    ok = False
    try:
        with sigterm_as_interrupt(), _progress(console) as progress:
            results = _phases(opts, home, progress)
        ok = True
    finally:
        if ok and not opts.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            console.print(f"bench state and worker logs kept in {home}")
    results.update(command=opts.command, seconds=round(time.monotonic() - started, 1),
                   finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()},
                   versions={p: version(p) for p in ("faust-streaming", "aiokafka", "lightgbm", "orjson", "pydantic")})
    return report.write(results, opts.out, opts.json_out)


def _phases(opts: Options, home: Path, progress: Progress) -> report.Results:
    def phase(label: str, total: float | None):
        task = progress.add_task(label, total=total)
        return lambda n=1: progress.advance(task, n)

    r: report.Results = {"batch_window_s": settings().batch_window_s}
    step = phase("building the workload", 1)
    work = workload.build(opts.csv, opts.events)
    expected = work.sessions()
    uci = sum(n for key, n in expected.items() if key.startswith(b"uci-"))
    r["workload"] = {"events": len(work.records), "sessions": len(expected), "uci_events": uci,
                     "uci_rows": sum(key.startswith(b"uci-") for key in expected), "catalog_pages": len(work.catalog)}
    step()

    intent = offline.worker_intent()
    gc_pauses.tune()  # as a worker does after loading: collections skip the workload and models
    sample = work.records[:opts.offline_events]
    step = phase("offline: processor, scoring, memory, profile, ablations", 6)
    r["processor"], timed, states = offline.processor_rate(intent, work.catalog, sample)
    step()
    r["scoring"] = offline.scoring_cost(intent, timed, len(sample), states)
    step()
    r["memory"] = {"memory_store": offline.memory_store(states, opts.memory_sessions),
                   "memory_store_compact": offline.memory_store(states, opts.memory_sessions, compact=True)}
    step()
    r["memory"]["rocksdb"] = offline.rocksdb_store(states, opts.memory_sessions, home / "rocksdb")
    step()
    r["profile"] = offline.profile(intent, work.catalog, sample[:opts.offline_events // 2])
    step()
    r["ablations"] = offline.ablations(intent, work.catalog, sample[:opts.offline_events // 2])
    step()
    del timed, states

    step = phase(f"own-traffic model: simulating ~{opts.events:,} events of a shop, personastream train", 1)
    own = site_models.training_cost(home / "own-traffic", opts.events)
    step()
    serving = site_models.serving_events(opts.own_events, train_events=own["events"])
    variants = [("UCI model (shipped, `uci-v1`)", SHIPPED), (f"site model (`{own['feature_set']}`)",
                                                              Path(own["models"]))]
    offline_rates = _offline_models(variants, serving[:opts.offline_events], phase)
    with local_rig(home) as rig:
        r.update(_through_kafka(opts, rig, work, expected, phase))
        through = _own_models(opts, rig, variants, serving, phase)
    r["own_traffic"] = _own_traffic(own, serving, variants, offline_rates, through, opts, phase)
    return r


def _through_kafka(opts: Options, rig: Rig, work: workload.Workload, expected, phase) -> report.Results:
    r: report.Results = {}
    total = len(work.records)
    one = rig.settings("w1", "bench.events", opts.partitions)
    rig.topics(one)
    r["preload"] = kafka.preload(rig.bootstrap, one.events_topic, work.records, phase("preloading events", total))
    r["ceiling"] = asyncio.run(kafka.ceiling(rig.bootstrap, one.events_topic, total,
                                             phase("ceiling: plain consumer", total)))

    offered = work.records[:int(opts.rate * opts.latency_s)]
    raw = rig.settings("raw", "raw.events", opts.partitions)
    rig.topics(raw)
    r["raw_latency"] = asyncio.run(kafka.offered_load(rig.bootstrap, raw.events_topic, raw.events_topic, offered,
                                                      opts.rate, lambda value: None,
                                                      phase(f"raw latency at {opts.rate:.0f} ev/s", len(offered))))

    sampled = rig.home / "worker-profile.txt"
    r["pipeline_1"] = kafka.throughput(rig, one, work.catalog, expected, 1, phase("pipeline, 1 worker", total),
                                       profile=sampled)
    r["worker_profile"] = (spy.summarize(sampled, r["pipeline_1"]["profiled_s"]) if sampled.exists()
                           else {"seconds": 0, "rate": spy.RATE, "threads": []})
    two = rig.settings("w2", "bench.events", opts.partitions)
    r["pipeline_2"] = kafka.throughput(rig, two, work.catalog, expected, 2, phase("pipeline, 2 workers", total))

    r["floors"] = _floors(rig, one.events_topic, work.catalog, total, opts.partitions, phase)
    r["worker_ablations"] = _worker_ablations(opts, rig, work, phase)

    lat = rig.settings("lat", "lat.events", opts.partitions)
    low = round(r["pipeline_1"]["events_per_s"] / 2, -2) or 100.0
    low_records = work.records[len(offered):len(offered) + int(low * opts.latency_s)]
    r["pipeline_latency"], r["pipeline_latency_low"] = kafka.pipeline_latency(
        rig, lat, work.catalog, [(opts.rate, offered), (low, low_records)],
        phase(f"pipeline latency at {opts.rate:.0f}, then {low:.0f} ev/s", len(offered) + len(low_records)))
    short = rig.settings("latw", "latw.events", opts.partitions).model_copy(update={"batch_window_s": SHORT_WINDOW_S})
    (r["pipeline_latency_short_window"],) = kafka.pipeline_latency(
        rig, short, work.catalog, [(low, low_records)],
        phase(f"pipeline latency at {low:.0f} ev/s, {SHORT_WINDOW_S * 1000:.0f} ms batch window", len(low_records)))
    r["short_window_s"] = SHORT_WINDOW_S
    r["fetch"], r["faust_fetch"] = {name: getattr(lat, name) for name in FAUST_FETCH}, FAUST_FETCH
    for name, update in (("shipped", {}), ("faust_fetch", FAUST_FETCH)):
        fresh = rig.settings(f"latf-{name}", f"latf-{name}.events", opts.partitions).model_copy(update=update)
        (r[f"pipeline_latency_fresh_{name}"],) = kafka.pipeline_latency(
            rig, fresh, work.catalog, [(low, low_records)],
            phase(f"pipeline latency at {low:.0f} ev/s, fresh worker, {name.replace('_', ' ')}", len(low_records)))
    return r


def _alternating(variants: Sequence[T], measure: Callable[[int, T], dict]) -> list[list[dict]]:
    """``measure(run, variant)`` of every variant in two rounds, the second in reverse order (so a machine
    getting slower or faster favours no variant); each variant's results, in the order of ``variants``."""
    order = [*range(len(variants)), *reversed(range(len(variants)))]
    runs: list[list[dict]] = [[] for _ in variants]
    for run, i in enumerate(order):
        runs[i].append(measure(run, variants[i]))
    return runs


def _mean(runs: list[dict], field: str) -> float | None:
    """The mean of ``field`` over ``runs``; None if any run has none."""
    values = [r[field] for r in runs]
    return None if None in values else round(sum(values) / len(values), 1)


def _floors(rig: Rig, topic: str, catalog: list[tuple[bytes, bytes]], total: int, partitions: int,
            phase) -> list[dict]:
    """Each of :data:`bench.floors.FLOORS` over the pre-loaded events of the throughput runs, one fresh worker
    per run, in two alternating rounds; each floor's rate is the mean of its rounds."""
    names = list(floors.FLOORS)
    step = phase(f"worker floors: {', '.join(names)}", 2 * len(names))

    def measure(run: int, name: str) -> dict:
        result = floors.rate(rig, rig.settings(f"floor{run}", topic, partitions), catalog, total, name)
        step()
        return result

    return [{**runs[-1], "rounds_events_per_s": [r["events_per_s"] for r in runs],
             "events_per_s": _mean(runs, "events_per_s"),
             "worker_cpu_us_per_event": _mean(runs, "worker_cpu_us_per_event")}
            for runs in _alternating(names, measure)]


def _worker_ablations(opts: Options, rig: Rig, work: workload.Workload, phase) -> list[dict]:
    """One fresh worker per variant of :data:`WORKER_ABLATIONS` over the same first events of the workload,
    in two alternating rounds; each variant's rate is the mean of its rounds."""
    records = work.records[:opts.ablation_events]
    expected = Counter(r.key for r in records)
    topic = "ablation.events"

    def measure(run: int, ablation: tuple[str, dict]) -> dict:
        variant, changes = ablation
        conf = rig.settings(f"a{run}", topic, opts.partitions).model_copy(update=changes)
        if run == 0:
            rig.topics(conf)
            kafka.preload(rig.bootstrap, topic, records, lambda n=1: None)
        return kafka.throughput(rig, conf, work.catalog, expected, 1,
                                phase(f"worker ablation: {variant}", len(records)))

    return [{"variant": variant, **runs[-1], "events_per_s": _mean(runs, "events_per_s"),
             "rounds_events_per_s": [r["events_per_s"] for r in runs],
             "sessions_complete": min(r["sessions_complete"] for r in runs)}
            for (variant, _), runs in zip(WORKER_ABLATIONS, _alternating(WORKER_ABLATIONS, measure))]


def _offline_models(variants: Sequence[tuple[str, Path]], records, phase) -> list[dict]:
    """The processor alone (no Kafka) with each model directory on the same events, in two alternating
    rounds after one unmeasured pass; its rate is the mean of the rounds."""
    step = phase("offline: the processor with each model", 2 * len(variants) + 1)
    loaded = [ModelDirectory.load(path) for _, path in variants]
    intents = [offline.worker_intent(models) for models in loaded]
    offline.processor_rate(intents[0], [], records, loaded[0])
    step()

    def measure(run: int, i: int) -> dict:
        rate, _, _ = offline.processor_rate(intents[i], [], records, loaded[i])
        step()
        return rate

    runs = _alternating(range(len(variants)), measure)
    return [{**rounds[-1], "rounds_events_per_s": [x["events_per_s"] for x in rounds],
             "events_per_s": _mean(rounds, "events_per_s"),
             "scores_us_per_event": round(sum(x["scores_us_per_event"] for x in rounds) / len(rounds), 2),
             "contributions_us_per_event": round(sum(x["contributions_us_per_event"] for x in rounds) / len(rounds),
                                                 2)}
            for rounds in runs]


def _own_models(opts: Options, rig: Rig, variants: Sequence[tuple[str, Path]], records, phase) -> list[dict]:
    """One fresh worker per model directory over the same pre-loaded simulated-shop events, in two alternating
    rounds; each model's rate and CPU per event are the means of its rounds."""
    expected = site_models.expected(records)
    topic = "own.events"

    def measure(run: int, variant: tuple[str, Path]) -> dict:
        name, path = variant
        conf = rig.settings(f"own{run}", topic, opts.partitions)
        if path != SHIPPED:
            conf = conf.model_copy(update={"models": path})
        if run == 0:
            rig.topics(conf)
            kafka.preload(rig.bootstrap, topic, records, lambda n=1: None)
        return kafka.throughput(rig, conf, [], expected, 1, phase(f"own-traffic events: {name}", len(records)))

    return [{"variant": name, "models": str(path), **runs[-1], "events_per_s": _mean(runs, "events_per_s"),
             "rounds_events_per_s": [x["events_per_s"] for x in runs],
             "workers_cpu_us_per_event": _mean(runs, "workers_cpu_us_per_event"),
             "rounds_workers_cpu_us_per_event": [x["workers_cpu_us_per_event"] for x in runs],
             "sessions_complete": min(x["sessions_complete"] for x in runs)}
            for (name, path), runs in zip(variants, _alternating(variants, measure))]


def _own_traffic(training: dict, serving, variants, offline_rates: list[dict], through: list[dict], opts: Options,
                 phase) -> dict:
    """The section's results; with a site model more than :data:`bench.report.MODEL_DROP` slower than the UCI model
    through the broker (or in the processor alone), each model's processor profile beside it."""
    uci, site = through
    ratio = round(site["events_per_s"] / uci["events_per_s"], 3)
    offline_ratio = round(offline_rates[1]["events_per_s"] / offline_rates[0]["events_per_s"], 3)
    result = {"training": training,
              "serving": {"events": len(serving), "sessions": len(site_models.expected(serving)),
                          "shop_seed": site_models.SHOP_SEED, "visits_seed": site_models.SERVE_SEED,
                          "partitions": opts.partitions},
              "models": [{**broker, "offline": rate} for broker, rate in zip(through, offline_rates)],
              "site_vs_uci_events_per_s": ratio, "site_vs_uci_offline_events_per_s": offline_ratio,
              "site_vs_uci_cpu_per_event": round(site["workers_cpu_us_per_event"] / uci["workers_cpu_us_per_event"], 3)
              if uci.get("workers_cpu_us_per_event") and site.get("workers_cpu_us_per_event") else None}
    if ratio < 1 - report.MODEL_DROP or offline_ratio < 1 - report.MODEL_DROP:
        step = phase("profiling the processor with each model", len(variants))
        records = serving[:opts.offline_events // 2]
        result["profiles"] = []
        for name, path in variants:
            models = ModelDirectory.load(path)
            found = offline.profile(offline.worker_intent(models), [], records, top=8, models=models)
            result["profiles"].append({"variant": name, **{k: v for k, v in found.items() if k != "tree"}})
            step()
    return result
