"""The intake buffer between the consumer's fetch loop and the session agent (no Kafka)."""

import asyncio
import doctest
from typing import NamedTuple

import faust
import pytest
from faust.types import TP, Message

import stream.intake
from stream.intake import Intake
from stream.offsets import ReadPositions


def test_doctests() -> None:
    assert doctest.testmod(stream.intake).failed == 0


def run(coro):
    return asyncio.run(coro)


def test_take_returns_a_full_batch_at_once_in_fetch_order() -> None:
    async def scenario():
        intake = Intake(maxsize=100, positions=ReadPositions())
        for i in range(7):
            assert intake.offer(i)
        loop = asyncio.get_running_loop()
        started = loop.time()
        batch = await intake.take(5, within=10.0)
        return batch, loop.time() - started, await intake.take(5, within=0.01)

    batch, waited, rest = run(scenario())
    assert batch == [0, 1, 2, 3, 4]
    assert waited < 1.0  # full: no wait for the window
    assert rest == [5, 6]


def test_take_waits_for_the_first_record_then_at_most_the_window() -> None:
    async def scenario():
        intake = Intake(maxsize=100, positions=ReadPositions())
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, intake.offer, "a")
        loop.call_later(0.07, intake.offer, "b")
        started = loop.time()
        batch = await intake.take(1000, within=0.2)
        return batch, loop.time() - started

    batch, waited = run(scenario())
    assert batch == ["a", "b"]
    assert 0.2 <= waited < 1.0


def test_records_that_already_waited_the_window_are_taken_at_once() -> None:
    async def scenario():
        intake = Intake(maxsize=100, positions=ReadPositions())
        intake.offer("a")
        await asyncio.sleep(0.3)  # the last batch was being processed meanwhile
        intake.offer("b")
        loop = asyncio.get_running_loop()
        started = loop.time()
        batch = await intake.take(1000, within=0.25)
        return batch, loop.time() - started

    batch, waited = run(scenario())
    assert batch == ["a", "b"]
    assert waited < 0.2


def test_a_full_intake_refuses_until_a_take_makes_room() -> None:
    async def scenario():
        intake = Intake(maxsize=3, positions=ReadPositions())
        offered = [intake.offer(i) for i in range(4)]
        room_before = intake.room.is_set()
        await intake.take(2, within=0.01)
        return offered, room_before, intake.room.is_set(), intake.offer(9), len(intake)

    offered, room_before, room_after, accepted, size = run(scenario())
    assert offered == [True, True, True, False]
    assert not room_before and room_after
    assert accepted and size == 2


class Fetched(NamedTuple):
    tp: str
    offset: int


def test_clear_drops_buffered_records_and_wakes_a_waiting_take_without_returning_them() -> None:
    async def scenario():
        intake = Intake(maxsize=10, positions=ReadPositions())
        intake.offer(Fetched("p0", 7))
        intake.clear()
        assert len(intake) == 0
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, intake.offer, Fetched("p0", 7))
        return await asyncio.wait_for(intake.take(10, within=0.01), timeout=5)

    assert run(scenario()) == [Fetched("p0", 7)]


def test_clear_moves_each_read_position_back_to_its_first_dropped_record() -> None:
    positions = ReadPositions()
    positions.sought({"p0": 5, "p1": 2, "p2": 9})
    intake = Intake(maxsize=10, positions=positions)
    for record in [Fetched("p0", 5), Fetched("p1", 2), Fetched("p0", 6), Fetched("p1", 3)]:
        positions.handed_over(record.tp, record.offset)
        intake.offer(record)
    intake.clear()
    assert positions.take_seeks() == {"p0": 5, "p1": 2}  # p2 dropped nothing
    assert positions.admit("p0", 4) is None and positions.admit("p0", 5) == range(5, 5)


def test_clear_leaves_a_position_a_later_seek_moved_below_the_dropped_records() -> None:
    """Faust's recovery seeks to the committed offset, then resumes flow, which clears the buffer."""
    positions = ReadPositions()
    positions.sought({"p0": 5})
    intake = Intake(maxsize=10, positions=positions)
    intake.offer(Fetched("p0", 5))
    positions.handed_over("p0", 5)
    positions.sought({"p0": 3})  # committed offset, below the buffered record
    intake.clear()
    assert positions.take_seeks() == {}
    assert positions.admit("p0", 3) == range(3, 3)


@pytest.mark.parametrize("maxsize", [1, 50])
def test_every_offered_record_is_taken_once_in_order(maxsize: int) -> None:
    async def scenario():
        intake = Intake(maxsize=maxsize, positions=ReadPositions())
        taken: list[int] = []

        async def produce():
            for i in range(500):
                while not intake.offer(i):
                    await intake.room.wait()
                if i % 37 == 0:
                    await asyncio.sleep(0)

        async def consume():
            while len(taken) < 500:
                taken.extend(await intake.take(64, within=0.001))

        await asyncio.wait_for(asyncio.gather(produce(), consume()), timeout=30)
        return taken

    assert run(scenario()) == list(range(500))


async def _consumer_with_history() -> tuple:
    """A Faust consumer (never started) of an acking and a non-acking topic, partition 0 of the
    first committed up to offset 5."""
    app = faust.App("ack-test", broker="kafka://127.0.0.1:1")
    app.topics.add(app.topic("events"))
    app.topics.add(app.topic("no-acks", acks=False))
    await app.topics._update_indices()  # what subscribing does

    async def nothing(*args) -> None:
        return None

    consumer = app.transport.create_consumer(callback=nothing, on_partitions_revoked=nothing,
                                             on_partitions_assigned=nothing)
    consumer._committed_offset[TP("events", 0)] = 5
    return consumer


def _message(topic: str, partition: int, offset: int) -> Message:
    return Message(topic, partition, offset, 0.0, 0, {}, b"k", b"v", None, tp=TP(topic, partition))


@pytest.mark.parametrize("batches", [
    [[("events", 0, o) for o in range(3, 9)], [("events", 1, 0), ("events", 0, 9), ("events", 1, 1)]],
    [[("events", 0, 7), ("events", 0, 6)], [("events", 0, 6), ("events", 0, 8)]],  # read again, out of order
    [[("no-acks", 0, 1), ("events", 2, 4)], [("no-acks", 0, 2)]],
])
def test_ack_leaves_the_consumer_as_faust_acking_each_record_would(batches) -> None:
    async def main() -> None:
        ours, faust_own = await _consumer_with_history(), await _consumer_with_history()
        for batch in batches:
            stream.intake.ack(ours, [_message(*m) for m in batch])
            for m in batch:
                faust_own.ack(_message(*m))
        assert ours._n_acked == faust_own._n_acked > 0
        assert {tp: sorted(o) for tp, o in ours._acked.items() if o} == \
            {tp: sorted(o) for tp, o in faust_own._acked.items() if o}
        assert dict(ours._acked_index) == dict(faust_own._acked_index)
        for tp in faust_own._acked:
            assert ours._new_offset(tp) == faust_own._new_offset(tp)
    run(main())


def test_the_worker_consumer_fetches_with_the_apps_fetch_settings() -> None:
    async def main() -> None:
        app = stream.intake.App("fetch-test", broker="kafka://127.0.0.1:1", fetch_min_bytes=4096, fetch_max_wait_ms=7)

        async def nothing(*args) -> None:
            return None

        consumer = app.transport.create_consumer(callback=nothing, on_partitions_revoked=nothing,
                                                 on_partitions_assigned=nothing)
        client = consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        try:
            assert (client._fetch_min_bytes, client._fetch_max_wait_ms) == (4096, 7)
        finally:
            await client.stop()
    run(main())
