"""Measurements without Kafka: the processor alone, intent scoring cost, state memory, a profile."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from models.actions import ActionCatalog
from models.directory import ModelDirectory
from models.features import SessionState
from models.intent import IntentModel
from models.persona import PersonaModel
from stream.config import Settings, settings
from stream.pages import PageTable
from stream.sessions import Record, SessionProcessor
from stream.tools.replay import Outgoing

BATCH = Settings.model_fields["batch_size"].default
"""Events per batch, as the worker's default ``PERSONASTREAM_BATCH_SIZE``."""


def worker_intent(models: ModelDirectory | None = None) -> IntentModel:
    """The intent model as the worker loads it (compiled to native code, cached like the worker's): the
    shipped one, or that of ``models``."""
    intent = models.intent if models is not None else IntentModel.load()
    return intent.compiled(settings().model_cache)


def processor(intent: IntentModel, catalog: Sequence[tuple[bytes, bytes]],
              models: ModelDirectory | None = None) -> SessionProcessor:
    """The worker's processor and settings, with the shipped persona snapshot and the page catalog loaded;
    with ``models``, its persona model and learned page statistics, as a worker serving that directory."""
    learned = dict(models.pages.pages) if models is not None and models.pages else {}
    pages = PageTable(prior=intent.page_prior, learned=learned)
    for key, value in catalog:
        pages.apply(key, value)
    personas = models.personas if models is not None else PersonaModel.default()
    return SessionProcessor.for_worker(settings(), intent, pages, ActionCatalog.load(settings().actions), personas)


def batches(records: Sequence[Outgoing], size: int = BATCH) -> list[list[Record]]:
    return [[Record(r.key, r.value, "bench", 0, i + j) for j, r in enumerate(records[i:i + size])]
            for i in range(0, len(records), size)]


def run_batches(proc: SessionProcessor, work: list[list[Record]]) -> dict[bytes, bytes]:
    """Process batches as the session agent does, writing states back into a dict table."""
    states: dict[bytes, bytes] = {}
    for batch in work:
        for key, (_, blob) in proc.process(batch, states).states.items():
            states[key] = blob
    return states


class TimedIntent:
    """An intent model that times the scoring calls the processor makes (everything else passes through)."""

    def __init__(self, model: IntentModel) -> None:
        self.model = model
        self.seconds: dict[str, float] = defaultdict(float)
        self.rows: dict[str, int] = defaultdict(int)

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def _timed(self, name: str, rows, *args):
        started = time.perf_counter()
        out = getattr(self.model, name)(rows, *args)
        self.seconds[name] += time.perf_counter() - started
        self.rows[name] += len(rows)
        return out

    def score(self, rows):
        return self._timed("score", rows)

    def contributions(self, rows, top: int = 3):
        return self._timed("contributions", rows, top)


def processor_rate(intent: IntentModel, catalog, records: Sequence[Outgoing],
                   models: ModelDirectory | None = None) -> tuple[dict, TimedIntent, list[SessionState]]:
    """Events/s of ``SessionProcessor.process`` alone, its timed scoring calls and the final states
    (``models``: with that directory's persona model and page statistics, see :func:`processor`)."""
    timed = TimedIntent(intent)
    work = batches(records)
    proc = processor(timed, catalog, models)
    started = time.perf_counter()
    states = run_batches(proc, work)
    seconds = time.perf_counter() - started
    return ({"events": len(records), "batch": BATCH, "seconds": round(seconds, 2),
             "events_per_s": round(len(records) / seconds, 1),
             "scored_rows_per_event": round(timed.rows["score"] / len(records), 3),
             "explained_rows_per_event": round(timed.rows["contributions"] / len(records), 3),
             "scores_us_per_event": round(timed.seconds["score"] / len(records) * 1e6, 2),
             "contributions_us_per_event": round(timed.seconds["contributions"] / len(records) * 1e6, 2)},
            timed, [SessionState.from_bytes(blob) for blob in states.values()])


def ablations(intent: IntentModel, catalog, records: Sequence[Outgoing]) -> list[dict]:
    """The processor's rate on the same events with one optimization undone at a time, side by side: after one
    unmeasured pass (the validators' caches are shared by every processor), each variant runs twice, in order
    and then in reverse order; its rate is the mean of the two."""
    variants = (("as the worker runs", {}),
                ("scores by LightGBM instead of compiled trees", {"intent": dataclasses.replace(intent, native=None)}),
                ("re-explain every medium/high-intent event (explain_delta 0)", {"explain_delta": 0.0}),
                ("no TreeSHAP explanations at all", {"top_features": 0}))
    work = batches(records)
    run_batches(processor(intent, catalog), work)
    rates: dict[int, list[float]] = defaultdict(list)
    for i in [*range(len(variants)), *reversed(range(len(variants)))]:
        proc = processor(intent, catalog)
        for attribute, value in variants[i][1].items():
            setattr(proc.scorer, attribute, value)
        started = time.perf_counter()
        run_batches(proc, work)
        rates[i].append(len(records) / (time.perf_counter() - started))
    return [{"variant": name, "events_per_s": round(sum(rates[i]) / len(rates[i]))}
            for i, (name, _) in enumerate(variants)]


def _per_call(fn, calls: int, repeat: int = 3) -> float:
    """Best-of-``repeat`` seconds per call of ``fn`` over ``calls`` calls."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - started)
    return best / calls


def scoring_cost(intent: IntentModel, timed: TimedIntent, events: int, states: Sequence[SessionState]) -> dict:
    """Per-event cost of intent scoring as the worker did it (timed calls) vs one-row Booster.predict.

    ``ratio`` compares the scores (the intent score every PersonaEvent carries); the TreeSHAP
    explanations of medium/high-intent visits are reported beside it (``ratio_with_explanations``)."""
    x = np.asarray([intent.row(states[len(states) // 2])], dtype=np.float64)
    worker_us = (timed.seconds["score"] + timed.seconds["contributions"]) / events * 1e6
    single_us = _per_call(lambda: intent.booster.predict(x, num_threads=1), 2000) * 1e6
    contrib_us = _per_call(lambda: intent.booster.predict(x, num_threads=1, pred_contrib=True), 300) * 1e6
    return {"events": events, "native_scoring": intent.native is not None,
            "scored_rows": timed.rows["score"], "explained_rows": timed.rows["contributions"],
            "worker_us_per_event": round(worker_us, 2),
            "worker_scores_only_us_per_event": round(timed.seconds["score"] / events * 1e6, 2),
            "worker_contributions_us_per_event": round(timed.seconds["contributions"] / events * 1e6, 2),
            "booster_predict_one_row_us": round(single_us, 2),
            "booster_pred_contrib_one_row_us": round(contrib_us, 2),
            "ratio": round(single_us / (timed.seconds["score"] / events * 1e6), 1),
            "ratio_with_explanations": round(single_us / worker_us, 1)}


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _token(i: int) -> bytes:
    """An opaque 32-character session token, like a UUID without dashes."""
    return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=16).hexdigest().encode()


def memory_store(templates: Sequence[SessionState], n: int, compact: bool = False) -> dict:
    """Bytes per session of ``n`` serialized states in a dict, as Faust's ``memory://`` store keeps them.

    ``compact`` stores a copy of each blob: an ``orjson.dumps`` result keeps its oversized output
    buffer resident (several KB of RSS per object), a copy does not.
    """
    gc.collect()
    before = rss_bytes()
    store: dict[bytes, bytes] = {}
    for i in range(n):
        blob = templates[i % len(templates)].to_bytes()
        store[_token(i)] = bytes(memoryview(blob)) if compact else blob
    rss = rss_bytes() - before
    objects = sys.getsizeof(store) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in store.items())
    blob = sum(len(v) for v in store.values()) / n
    del store
    gc.collect()
    return {"sessions": n, "compact_copy": compact, "state_blob_bytes": round(blob, 1),
            "python_object_bytes_per_session": round(objects / n, 1),
            "rss_bytes_per_session": round(rss / n, 1)}


def rocksdb_store(templates: Sequence[SessionState], n: int, directory: Path) -> dict:
    """The same sessions in RocksDB opened with Faust's ``rocksdb://`` options (via rocksdict)."""
    try:
        from faust.stores.rocksdb import RocksDBOptions
        from rocksdict import WriteBatch
    except ImportError as exc:
        return {"available": False, "error": f"{exc} (pip install rocksdict)"}
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    gc.collect()
    before = rss_bytes()
    db = RocksDBOptions(use_rocksdict=True).open(directory / "sessions.db")
    try:
        for start in range(0, n, 10_000):
            batch = WriteBatch(raw_mode=True)
            for i in range(start, min(n, start + 10_000)):
                batch.put(_token(i), templates[i % len(templates)].to_bytes())
            db.write(batch)
        db.flush()
        rss = rss_bytes() - before
        db.compact_range(None, None)
        disk = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    finally:
        db.close()
        shutil.rmtree(directory, ignore_errors=True)
    return {"available": True, "sessions": n, "disk_bytes_per_session": round(disk / n, 1),
            "rss_bytes_per_session": round(rss / n, 1)}


def profile(intent: IntentModel, catalog, records: Sequence[Outgoing], top: int = 15,
            models: ModelDirectory | None = None) -> dict:
    """pyinstrument over ``SessionProcessor.process`` on worker-sized batches: top frames by self time."""
    from pyinstrument import Profiler

    work = batches(records)
    proc = processor(intent, catalog, models)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    run_batches(proc, work)
    profiler.stop()
    root = profiler.last_session.root_frame()
    selfs: dict[str, float] = defaultdict(float)
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if not frame.is_synthetic and frame.total_self_time > 0:
            selfs[f"{frame.function} ({frame.file_path_short}:{frame.line_no})"] += frame.total_self_time
    total = root.time
    ranked = sorted(selfs.items(), key=lambda item: -item[1])[:top]
    return {"events": len(records), "seconds": round(total, 2),
            "top_self": [{"frame": name, "seconds": round(t, 3), "share": round(t / total, 4)} for name, t in ranked],
            "tree": profiler.output_text(unicode=False, color=False, processor_options={"filter_threshold": 0.02})}
