"""Garbage-collector pauses of a worker: start-up objects frozen out of full collections, pauses timed.

A worker holds a few hundred thousand long-lived objects from start-up (models, catalog, Faust's
services). CPython's full collections walk all of them: about 200 ms a pause, a sixth of a busy
worker's time (BENCHMARKS.md). :func:`freeze_startup` moves them to the permanent generation
once, after the models are loaded; what the worker allocates later is collected as usual.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

PAUSES = Histogram("personastream_gc_full_pause_seconds", "pauses of the garbage collector's full collections",
                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))


def freeze_startup() -> int:
    """Collect once, then exclude every object alive now from future collections; returns how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def time_pauses() -> None:
    """Record every full collection's duration in :data:`PAUSES` (idempotent); the young generations'
    collections, thousands a second, are not timed."""
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


_collection_started = 0.0


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    global _collection_started
    if info["generation"] != 2:
        return
    if phase == "start":
        _collection_started = time.perf_counter()
    else:
        PAUSES.observe(time.perf_counter() - _collection_started)
