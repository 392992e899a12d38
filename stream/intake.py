"""The session agent's input without Faust's per-record machinery.

Faust hands every fetched record to a stream one at a time: a ``Service.wait_first`` (four tasks)
around each delivery, an ``Event`` and a queue put per record, a ``take_events`` buffer and an ack
per event; about 60 µs per record on this project's machine, more than the session processing
itself. :class:`IntakeConsumer` keeps Faust's fetcher, partition assignment, table recovery, flow
control and offset commits, and only changes what happens to a fetched record of a topic that has
an :class:`Intake`: it is appended to that intake's buffer, which the agent's task takes a batch at
a time and acknowledges with :func:`ack`. Records of every other topic go the usual way.

Faust's flow control clears the buffers of streams when it resumes flow after a rebalance's
recovery, which also drops records fetched after the recovery's seek (faust-streaming 0.15.3 does
this to its own streams too). The intake remembers the first offset it dropped per partition and
the fetch loop seeks back to it, so a dropped record is always read again.

Relies on faust-streaming 0.15.3 internals (``Consumer._drain_messages``, ``_read_offset``,
``_add_gap``, the acknowledgement bookkeeping, ``App._new_transport``, the consumer thread's
``_create_worker_consumer``); ``pyproject.toml`` pins that version.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Iterable

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

YIELD_EVERY = 100
"""Records handed over between two yields to the event loop (Faust's own value)."""
FINISH_WAIT_S = 10.0
"""Longest a rebalance or a stop waits for the batches in flight (well below the broker's session timeout)."""


class Intake:
    """Fetched records of one topic, buffered in fetch order until the agent takes a batch; the agent
    calls :meth:`finish` once the batch is delivered and acknowledged, and a rebalance waits for that.

    >>> intake = Intake(maxsize=2)
    >>> intake.offer("a"), intake.offer("b"), intake.offer("c")
    (True, True, False)
    >>> asyncio.run(intake.take(10, within=0.01))
    ['a', 'b']
    >>> intake.finish()  # delivered and acknowledged
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._records: deque[Message] = deque()
        self._rewinds: dict[Any, int] = {}
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
        """Drop every buffered record (Faust's flow control does this on a rebalance); the first
        offset dropped per partition is kept for :meth:`take_rewinds`."""
        for message in self._records:
            tp = message.tp
            self._rewinds[tp] = min(message.offset, self._rewinds.get(tp, message.offset))
        self._records.clear()
        self.room.set()
        self._enough.set()

    def take_rewinds(self) -> dict[Any, int]:
        """partition -> first offset dropped by :meth:`clear` since the last call: read it again."""
        rewinds, self._rewinds = self._rewinds, {}
        return rewinds

    def forget_rewinds(self) -> None:
        """A new assignment: Faust seeks every partition to its committed offset itself."""
        self._rewinds.clear()


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
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                await self._read_dropped_again(intakes.values())
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
                    offset, last = message.offset, read_offset[tp]
                    if last is not None and offset < last:
                        continue  # read again after a seek: Faust drops these too
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)  # compacted or transaction markers
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    intake = intakes.get(tp.topic)
                    if intake is None:
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await self._hand_over(intake, message)
                    read_offset[tp] = offset
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

    async def _read_dropped_again(self, intakes: Iterable[Intake]) -> None:
        assigned = self.assignment()
        for intake in intakes:
            for tp, offset in intake.take_rewinds().items():
                if tp in assigned:
                    await self.seek(tp, offset)

    async def _hand_over(self, intake: Intake, message: Message) -> None:
        """Buffer the record: at once while flow is on and there is room; else, like Faust's own
        delivery, once flow control lets records through again (after a rebalance's recovery, which
        clears the buffer first) and there is room, or never if the consumer stops flow meanwhile
        (a rebalance: the partitions are read again from their committed offsets)."""
        if self.app.flow_control.is_active() and intake.offer(message):
            return
        await self.wait_first(self._offer_when_flowing(intake, message), self.suspend_flow.wait())

    async def _offer_when_flowing(self, intake: Intake, message: Message) -> None:
        while True:
            await self.app.flow_control.acquire()
            if intake.offer(message):
                return
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


class IntakeTransport(faust_aiokafka.Transport):
    Consumer = IntakeConsumer


class App(faust.App):
    """A Faust app whose consumer feeds the intakes registered with :meth:`intake`."""

    def __init__(self, *args: Any, fetch_min_bytes: int = 1, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intakes: dict[str, Intake] = {}
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
        intake = self.intakes[name] = Intake(maxsize)
        self.topics.add(topic)
        self.flow_control.manage_queue(intake)
        return intake

