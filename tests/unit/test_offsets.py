"""ReadPositions: every record of a partition handed over once and in order, from the position a seek set."""

import doctest

import stream.offsets
from stream.offsets import ReadPositions


def test_doctests() -> None:
    assert doctest.testmod(stream.offsets).failed == 0


def test_nothing_is_handed_over_before_a_seek_sets_the_position() -> None:
    positions = ReadPositions()
    assert positions.admit("a", 0) is None
    positions.dropped("a")  # nothing to seek back to either
    assert positions.take_seeks() == {}
    positions.sought({"a": 40})
    assert positions.admit("a", 39) is None and positions.admit("a", 40) == range(40, 40)


def test_records_are_admitted_in_order_and_records_read_again_are_not() -> None:
    positions = ReadPositions()
    positions.sought({"a": 0, "b": 7})
    handed = []
    for tp, offset in [("a", 0), ("b", 7), ("a", 1), ("a", 0), ("b", 7), ("a", 4), ("b", 8)]:
        if positions.admit(tp, offset) is not None:
            positions.handed_over(tp, offset)
            handed.append((tp, offset))
    assert handed == [("a", 0), ("b", 7), ("a", 1), ("a", 4), ("b", 8)]


def test_a_dropped_record_seeks_back_to_the_next_offset_once() -> None:
    positions = ReadPositions()
    positions.sought({"a": 10, "b": 3})
    seeks_before = positions.seeks
    positions.handed_over("a", 10)
    positions.dropped("a")
    assert positions.take_seeks() == {"a": 11}
    assert positions.take_seeks() == {}
    positions.sought({"a": 11})
    assert positions.seeks == seeks_before + 1


def test_a_seek_cancels_a_pending_seek_back_of_the_same_partition() -> None:
    positions = ReadPositions()
    positions.sought({"a": 10})
    positions.dropped("a")
    positions.sought({"a": 4})  # e.g. Faust's recovery, to the committed offset
    assert positions.take_seeks() == {}
    assert positions.admit("a", 4) == range(4, 4)


def test_rewind_only_moves_a_known_position_back() -> None:
    positions = ReadPositions()
    positions.rewind("a", 5)  # not sought: nothing to move
    positions.sought({"a": 5})
    positions.rewind("a", 9)
    assert positions.take_seeks() == {}
    positions.rewind("a", 2)
    assert positions.take_seeks() == {"a": 2}


def test_forgotten_partitions_wait_for_the_next_seek() -> None:
    positions = ReadPositions()
    positions.sought({"a": 5, "b": 1})
    positions.dropped("a")
    positions.forget(["a"])
    assert positions.take_seeks() == {}
    assert positions.admit("a", 5) is None and positions.admit("b", 1) == range(1, 1)


def test_an_interruption_seeks_every_partition_back_and_ends_the_batch() -> None:
    positions = ReadPositions()
    positions.sought({"a": 5, "b": 1})
    positions.handed_over("a", 5)
    seeks = positions.seeks
    positions.interrupted()
    assert positions.seeks > seeks
    assert positions.take_seeks() == {"a": 6, "b": 1}
