import gc

from stream import gc_pauses


def _collections_timed(generation: str) -> float:
    samples = [s for metric in gc_pauses.PAUSES.collect() for s in metric.samples
               if s.name.endswith("_count") and s.labels["generation"] == generation]
    return samples[0].value if samples else 0.0


def test_freeze_startup_takes_live_objects_out_of_collections():
    kept = [object()]
    try:
        assert gc_pauses.freeze_startup() == gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(obj is kept for obj in gc.get_objects())


def test_every_collection_is_timed_once():
    gc_pauses.time_pauses()
    gc_pauses.time_pauses()
    try:
        assert gc.callbacks.count(gc_pauses._on_collection) == 1
        before = _collections_timed("2")
        gc.collect()
        assert _collections_timed("2") == before + 1
    finally:
        gc.callbacks.remove(gc_pauses._on_collection)
