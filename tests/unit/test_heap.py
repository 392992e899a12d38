"""Freed memory handed back to the system (no Kafka)."""

from stream.heap import FreedMemory


def test_the_heaps_are_trimmed_once_enough_visits_were_deleted() -> None:
    trims = []
    freed = FreedMemory(after=100, trim=lambda: trims.append(1))
    assert not freed.deleted(60)
    assert freed.deleted(40)
    freed.release()
    assert trims == [1] and not freed.deleted(99)


def test_without_malloc_trim_nothing_is_trimmed() -> None:
    assert not FreedMemory(after=1, trim=None).deleted(10)


def test_glibcs_trim_runs_here() -> None:
    freed = FreedMemory(after=1)
    assert freed.deleted(1)
    freed.release()
