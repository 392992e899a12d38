"""The session agent's input without Faust's per-record machinery.

Faust hands every fetched record to a stream one at a time: a ``Service.wait_first`` (four tasks)
around each delivery, an ``Event`` and a queue put per record, a ``take_events`` buffer and an ack
per event; about 60 µs per record on this project's machine, more than the session processing
itself. :class:`IntakeConsumer` keeps Faust's fetcher, partition assignment, table recovery, flow
control and offset commits, and only changes what happens to a fetched record of a topic that has
an :class:`Intake`: it is appended to that intake's buffer, which the agent's task takes a batch at
a time and acknowledges with :func:`ack`. Records of every other topic go the usual way.

Records of an intake topic are handed over in offset order from the position :class:`ReadPositions`
keeps (set by every seek, including the one to the committed offsets that ends each rebalance's
recovery). A batch fetched across a seek is dropped and read again from the new position; so are the
records Faust's flow control clears from the buffer when a rebalance stops or resumes flow. Seeks run
on Faust's consumer thread, which owns the Kafka client.

Relies on faust-streaming 0.15.3 internals (``Consumer._drain_messages``, ``perform_seek``,
``_committed_offset``, ``_add_gap``, the acknowledgement bookkeeping, ``App._new_transport``, the
consumer thread's ``_create_worker_consumer`` and ``call_thread``); ``pyproject.toml`` pins that version.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from functools import cached_property
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from stream import metrics
from stream.offsets import ReadPositions

YIELD_EVERY = 100
"""Records handed over between two yields to the event loop (Faust's own value)."""
FINISH_WAIT_S = 10.0
"""Longest a rebalance or a stop waits for the batches in flight (well below the broker's session timeout)."""


class Intake:
    """Fetched records of one topic, buffered in fetch order until the agent takes a batch; the agent
    calls :meth:`finish` once the batch is delivered and acknowledged, and a rebalance waits for that.

    >>> intake = Intake(maxsize=2, positions=ReadPositions())
    >>> intake.offer("a"), intake.offer("b"), intake.offer("c")
    (True, True, False)
    >>> asyncio.run(intake.take(10, within=0.01))
    ['a', 'b']
    >>> intake.finish()  # delivered and acknowledged
    """

    def __init__(self, maxsize: int, positions: ReadPositions[TP]) -> None:
        self.maxsize = maxsize
        self._records: deque[Message] = deque()
        self._positions = positions
        self._want = 1
        self._since = 0.0
        """When the oldest buffered record arrived (``time.monotonic()``)."""
        self._enough = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self._unfinished = 0
        self._all_finished = asyncio.Event()
        self._all_finished.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._records)

    def offer(self, message: Message) -> bool:
        """Buffer ``message``; False (and nothing buffered) while the buffer is full."""
        records = self._records
        if len(records) >= self.maxsize:
            self.room.clear()
            return False
        if not records:
            self._since = time.monotonic()
        records.append(message)
        if len(records) >= self._want:
            self._enough.set()
        return True

    async def take(self, max_records: int, within: float) -> list[Message]:
        """The next ``max_records`` records, or fewer once the oldest of them has waited ``within`` seconds
        (records that arrived while the last batch was processed do not wait again)."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._records:
                await self._wait_for(1)
            left = self._since + within - time.monotonic()
            if len(self._records) < max_records and left > 0:
                timer = loop.call_later(left, self._enough.set)
                try:
                    await self._wait_for(max_records)
                finally:
                    timer.cancel()
            if self._closed:
                await asyncio.get_running_loop().create_future()  # no more batches; cancelled at shutdown
            n = min(max_records, len(self._records))
            if n:
                batch = [self._records.popleft() for _ in range(n)]
                if len(self._records) < self.maxsize:
                    self.room.set()
                self._unfinished += 1
                self._all_finished.clear()
                return batch

    def finish(self) -> None:
        """A batch :meth:`take` returned is delivered and acknowledged."""
        self._unfinished -= 1
        if not self._unfinished:
            self._all_finished.set()

    async def finished(self) -> None:
        """Wait until every batch taken so far is finished (a rebalance waits for them)."""
        await self._all_finished.wait()

    def close(self) -> None:
        """Hand out no more batches (the worker is stopping)."""
        self._closed = True

    async def _wait_for(self, n: int) -> None:
        self._want = n
        self._enough.clear()
        try:
            await self._enough.wait()
        finally:
            self._want = 1

    def clear(self) -> None:
        """Drop every buffered record (Faust's flow control does this on a rebalance); each partition's
        read position goes back to its first dropped record."""
        first: dict[TP, int] = {}
        for message in self._records:
            first.setdefault(message.tp, message.offset)
        for tp, offset in first.items():
            self._positions.rewind(tp, offset)
        self._records.clear()
        self.room.set()
        self._enough.set()


def ack(consumer: faust_aiokafka.Consumer, messages: list[Message]) -> None:
    """Acknowledge processed records: their offsets become committable by Faust's commit loop.

    The bookkeeping of Faust's ``Consumer.ack``, a partition at a time instead of a record at a time
    (records of an intake are not tracked as unacknowledged messages, so there is nothing to discard).
    """
    offsets: dict[Any, list[int]] = {}
    for message in messages:
        offsets.setdefault(message.tp, []).append(message.offset)
    with ack_lock:
        for tp, acked in offsets.items():
            if not consumer.app.topics.acks_enabled_for(tp.topic):
                continue
            committed, index = consumer._committed_offset[tp], consumer._acked_index[tp]
            new = [offset for offset in acked if (committed is None or offset >= committed) and offset not in index]
            index.update(new)
            consumer._acked[tp].extend(new)
            consumer._n_acked += len(new)
        notify(consumer._waiting_for_ack)


class IntakeConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer; records of a topic with an intake go to that intake's buffer."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (runs in every broker test)
        callback = self.callback
        intakes = self.app.intakes
        positions = self.app.read_positions
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                async with self._seeking:  # a seek in progress ends before the next fetch
                    rewinds = positions.take_seeks()
                    if rewinds:
                        await self._seek_intakes(rewinds)
                        metrics.REWINDS.inc(len(rewinds))
                    seeks = positions.seeks
                dropping: set[TP] = set()
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    offset = message.offset
                    intake = intakes.get(tp.topic)
                    if intake is None:  # Faust's own delivery
                        last = read_offset[tp]
                        if last is not None and offset < last:
                            continue
                        if last and offset - last > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, last + 1, offset)
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offset[tp] = offset
                        continue
                    if tp in dropping or positions.seeks != seeks:  # fetched across a seek: read it again
                        dropping.add(tp)
                        positions.dropped(tp)
                        continue
                    no_records = positions.admit(tp, offset)
                    if no_records is None:
                        continue
                    if no_records and acks_enabled_for(tp.topic):
                        await self._add_gap(tp, no_records.start, no_records.stop - 1)
                    if await self._hand_over(intake, message, seeks):
                        positions.handed_over(tp, offset)
                    else:
                        dropping.add(tp)
                        positions.dropped(tp)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _new_consumer_thread(self) -> IntakeConsumerThread:
        return IntakeConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets (which leaves a partition without one, or at 0, where it
        was), then every intake partition to its committed offset, or its first one if none is committed."""
        async with self._seeking:
            await super().perform_seek()
            partitions = [tp for tp in self.assignment() if tp.topic in self.app.intakes]
            offsets = {tp: self._committed_offset.get(tp) for tp in partitions}
            uncommitted = [tp for tp, offset in offsets.items() if offset is None]
            if uncommitted:
                offsets.update(await self.earliest_offsets(*uncommitted))
            await self._seek_intakes(offsets)

    @cached_property
    def _seeking(self) -> asyncio.Lock:
        """Held from a seek's request to its end: seeks reach the Kafka client in the order their
        positions were set, and no fetch starts meanwhile."""
        return asyncio.Lock()

    async def _seek_intakes(self, offsets: dict[TP, int]) -> None:
        """Read intake partitions on from ``offsets``, and seek them there on the consumer thread, which owns
        the Kafka client (a seek from this thread can leave a partition unfetched). The positions move first:
        a batch fetched before is dropped and read again. Called holding :attr:`_seeking`."""
        if offsets:
            self.app.read_positions.sought(offsets)
            await self._thread.call_thread(self._thread.seek_assigned, offsets)

    def stop_flow(self) -> None:
        """Faust's flow stop (a rebalance), which ends the batch being handed over without a word."""
        super().stop_flow()
        self.app.read_positions.interrupted()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await super().on_partitions_revoked(revoked)
        self.app.read_positions.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.app.read_positions.forget(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    async def _hand_over(self, intake: Intake, message: Message, seeks: int) -> bool:
        """Buffer the record: at once while flow is on and there is room; else, like Faust's own
        delivery, once flow control lets records through again and there is room, unless the consumer
        stops flow (a rebalance) or a seek or rewind (``read_positions.seeks`` no longer ``seeks``)
        happens meanwhile. True if it was buffered."""
        if self.app.read_positions.seeks != seeks:
            return False
        if self.app.flow_control.is_active() and intake.offer(message):
            return True
        offer = self._offer_when_flowing(intake, message, seeks)
        waited = await self.wait_first(offer, self.suspend_flow.wait())
        return dict(zip(waited.done, waited.results)).get(offer, False)

    async def _offer_when_flowing(self, intake: Intake, message: Message, seeks: int) -> bool:
        while True:
            await self.app.flow_control.acquire()
            if self.app.read_positions.seeks != seeks:
                return False
            if intake.offer(message):
                return True
            await intake.room.wait()


class IntakeConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; its Kafka consumer gathers up to :attr:`App.fetch_min_bytes` per fetch,
    waiting at most :attr:`App.fetch_max_wait_ms` (Faust asks for 1 byte and 1.5 s: under moderate load
    every fetch then returns a few records, and the consumer thread and the broker spend their time on
    round trips)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app = self.consumer.app
        consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = app.fetch_min_bytes, app.fetch_max_wait_ms
        return consumer

    async def seek_assigned(self, offsets: dict[TP, int]) -> None:
        """Seek the partitions of ``offsets`` still assigned (runs on this thread)."""
        consumer = self._ensure_consumer()
        assigned = consumer.assignment()
        for tp, offset in offsets.items():
            kafka_tp = faust_aiokafka.ensure_aiokafka_TP(tp)
            if kafka_tp in assigned:
                consumer.seek(kafka_tp, offset)


class IntakeTransport(faust_aiokafka.Transport):
    Consumer = IntakeConsumer


class App(faust.App):
    """A Faust app whose consumer feeds the intakes registered with :meth:`intake`."""

    def __init__(self, *args: Any, fetch_min_bytes: int = 1, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intakes: dict[str, Intake] = {}
        self.read_positions: ReadPositions[TP] = ReadPositions()
        self.fetch_min_bytes, self.fetch_max_wait_ms = fetch_min_bytes, fetch_max_wait_ms

    def _new_transport(self) -> IntakeTransport:
        return IntakeTransport(self.conf.broker_consumer, self)

    async def finish_batches(self) -> None:
        """Let the batches taken from the intakes deliver and acknowledge, for up to :data:`FINISH_WAIT_S`.

        A rebalance and a stop wait for this before partitions are handed over. A batch already taken
        would otherwise write its state, counts and outputs after the partition's next owner restored
        its tables: that owner would process the batch again from a state without it, and count it twice.
        """
        try:
            await asyncio.wait_for(asyncio.gather(*(intake.finished() for intake in self.intakes.values())),
                                   FINISH_WAIT_S)
        except asyncio.TimeoutError:
            self.log.warning("batches still undelivered after %g s; handing partitions over anyway", FINISH_WAIT_S)

    async def on_stop(self) -> None:
        """Deliver the batches in flight, taking no more, before the consumer leaves the group."""
        for intake in self.intakes.values():
            intake.close()
        await self.finish_batches()
        await super().on_stop()

    def intake(self, topic: faust.TopicT, maxsize: int) -> Intake:
        """Subscribe to ``topic`` and buffer its records in the returned intake instead of a stream."""
        (name,) = topic.topics
        intake = self.intakes[name] = Intake(maxsize, self.read_positions)
        self.topics.add(topic)
        self.flow_control.manage_queue(intake)
        return intake

