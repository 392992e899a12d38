import gc

from stream import gc_pauses


def _collections_timed() -> float:
    return next(s.value for metric in gc_pauses.PAUSES.collect() for s in metric.samples if s.name.endswith("_count"))


def test_tune_freezes_live_objects_and_collects_less_often():
    kept, thresholds = [object()], gc.get_threshold()
    try:
        assert gc_pauses.tune() == gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())
        assert gc.get_threshold() == gc_pauses.THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert any(obj is kept for obj in gc.get_objects())


def test_every_full_collection_is_timed_once():
    gc_pauses.time_pauses()
    gc_pauses.time_pauses()
    try:
        assert gc.callbacks.count(gc_pauses._on_collection) == 1
        before = _collections_timed()
        gc.collect(0)
        assert _collections_timed() == before
        gc.collect()
        assert _collections_timed() == before + 1
    finally:
        gc.callbacks.remove(gc_pauses._on_collection)
