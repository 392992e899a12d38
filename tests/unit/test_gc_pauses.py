import gc

from stream import gc_pauses


def _collections_timed() -> float:
    return next(s.value for metric in gc_pauses.PAUSES.collect() for s in metric.samples if s.name.endswith("_count"))


def test_freeze_startup_takes_live_objects_out_of_collections():
    kept = [object()]
    try:
        assert gc_pauses.freeze_startup() == gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())
    finally:
        gc.unfreeze()
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
