"""OffsetGuard: every record once and in order per partition, with a seek back after a gap."""

from stream.offsets import OffsetGuard


def test_gap_asks_to_seek_back_and_redeliveries_are_dropped():
    guard = OffsetGuard()
    kept, rewind = guard.admit([("a", 5, "a5"), ("b", 0, "b0"), ("a", 6, "a6")])
    assert kept == ["a5", "b0", "a6"] and rewind == {}
    kept, rewind = guard.admit([("a", 9, "a9"), ("b", 1, "b1"), ("a", 10, "a10"), ("b", 2, "b2")])
    assert kept == ["b1", "b2"] and rewind == {"a": 7}  # a7, a8 were skipped: nothing of "a" until they come
    kept, rewind = guard.admit([("a", 7, "a7"), ("a", 8, "a8"), ("a", 9, "a9"), ("b", 2, "b2"), ("b", 3, "b3")])
    assert kept == ["a7", "a8", "a9", "b3"] and rewind == {}


def test_forgotten_partitions_start_from_whatever_comes_next():
    guard = OffsetGuard()
    guard.admit([("a", 0, "a0")])
    guard.forget(["a"])
    assert guard.admit([("a", 40, "a40")]) == (["a40"], {})
