"""Sessionization of a batch of raw records: the pure core the session agent wires.

Visits are cut in event time by an inactivity gap; each visit's state is folded event by event,
then every visit touched by the batch is scored once (:mod:`stream.scoring`) and published, so the
newest PersonaEvent of a visit always reflects all of its events processed so far.

A visit ends when its session comes back after the gap, or when the partition's event time passes
the visit's last event by the gap. A partition's event time is the newest event time seen on it, but
never more than ``max_clock_lead_s`` ahead of the worker's wall clock: an event dated further ahead
(a fast browser clock) is folded into its visit and moves the partition's time only that far, so it
cannot end the other visits of its partition. A visit that ends in the batch that folded events into
it is published with its final state before its session's next visit. An ended visit is learned from
once by the persona model and feeds the exit and bounce statistics of its last page; its action
decisions not yet rewarded by a purchase are rewarded 0 (a purchase rewards those before it 1); its state is
deleted (a changelog tombstone) ``retain_s`` later, so the table holds recent sessions only. The
index of open and ended visits lives in memory and is rebuilt from the table after a restart or a
rebalance (:meth:`SessionProcessor.restore_index`).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, MutableMapping, Protocol, Sequence

from models.actions import ActionCatalog
from models.bandit import ActionPolicy, settle
from models.features import SessionState, fold, is_duplicate, start_visit
from models.intent import IntentModel
from models.persona import PersonaModel, persona_features
from schemas.dead_letter import DeadLetter
from schemas.events import EventError, parse_event
from schemas.persona import PersonaEvent
from stream.config import Settings
from stream.pages import PageTable
from stream.persona_sync import SharedPersona
from stream.scoring import Scorer


class Consumed(Protocol):
    """What the processor reads of a consumed Kafka record: a Faust message is one (the session agent
    hands them over as they are), so is a :class:`Record`."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True)
class Record:
    """A record to process that was not consumed from Kafka (offline replays, tests)."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass
class BatchResult:
    personas: dict[bytes, bytes] = field(default_factory=dict)
    """session key -> PersonaEvent (JSON) of each visit the batch touched, in the order first touched."""
    ended_personas: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(session key, PersonaEvent JSON) of each visit that ended within the batch after it touched it (its
    session came back after the gap), with its final state, in the order they ended."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    states: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)
    """session key -> (partition, serialized state, or None to delete it) to write to the table and its changelog."""
    page_observations: dict[str, dict[str, int]] = field(default_factory=dict)
    """page id -> counts (views, entrances, exits, bounces) the batch observed."""
    duplicates: int = 0
    closed: int = 0
    """visits ended in this batch."""

    def published(self) -> list[tuple[bytes, bytes]]:
        """(session key, PersonaEvent JSON) to publish, in order: the ended visits' before the open ones'."""
        return [*self.ended_personas, *self.personas.items()]

    def persona_events(self) -> list[PersonaEvent]:
        """:meth:`published` parsed and validated."""
        return [PersonaEvent.model_validate_json(value) for _, value in self.published()]


@dataclass
class VisitIndex:
    """The open visits of one partition ordered by last event time, so the visits idle the longest end
    first whatever order they were touched in. A heap with lazy deletion: an entry superseded by a newer
    last event time is skipped when popped, and the heap is rebuilt once such entries outnumber the visits."""

    _last: dict[bytes, float] = field(default_factory=dict)
    _heap: list[tuple[float, bytes]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, key: bytes) -> bool:
        return key in self._last

    def touch(self, key: bytes, last_ts: float) -> None:
        if self._last.get(key) == last_ts:
            return
        self._last[key] = last_ts
        heapq.heappush(self._heap, (last_ts, key))
        if len(self._heap) > 2 * len(self._last) + 64:
            self._heap = [(ts, k) for k, ts in self._last.items()]
            heapq.heapify(self._heap)

    def pop_idle(self, before: float) -> Iterator[tuple[bytes, float]]:
        """Remove and yield (key, last event time) of the visits whose last event is before ``before``, oldest first."""
        while self._heap and self._heap[0][0] < before:
            if (popped := self._pop()) is not None:
                yield popped

    def pop_oldest(self) -> tuple[bytes, float] | None:
        """Remove and return the visit with the oldest last event (None if there is none)."""
        while self._heap:
            if (popped := self._pop()) is not None:
                return popped
        return None

    def _pop(self) -> tuple[bytes, float] | None:
        last_ts, key = heapq.heappop(self._heap)
        if self._last.get(key) != last_ts:
            return None  # superseded by a newer event of the visit
        del self._last[key]
        return key, last_ts


@dataclass
class SessionProcessor:
    scorer: Scorer
    pages: PageTable
    gap_s: float = 1800.0
    max_future_s: float = 3600.0
    """Events dated more than this ahead of :attr:`now` are dead letters and move no clock."""
    max_clock_lead_s: float = 60.0
    """A partition's event-time clock runs at most this far ahead of :attr:`now`."""
    max_open_visits: int = 1_000_000
    """Open visits indexed per partition for closing by event time; those with the oldest last events
    beyond it are forgotten by the index (closed when their session comes back, as after a restart)."""
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    _open: dict[int, VisitIndex] = field(default_factory=dict, repr=False)
    """partition -> its open visits."""
    retain_s: float = 1800.0
    """An ended visit's state is deleted once its partition's event time passes its last event by
    the gap plus this (until then a returning session continues its visit count)."""
    retain_wall_s: float = 60.0
    """... and once this much wall-clock time has passed since it ended: long after the offsets of its
    records are committed, so a worker restarted from its committed offsets never reads them again."""
    _ended: dict[int, OrderedDict[bytes, tuple[float, float]]] = field(default_factory=dict, repr=False)
    """partition -> ended visits still stored (session key -> (last event time, wall time ended)), oldest first."""
    _clock: dict[int, float] = field(default_factory=dict, repr=False)
    """partition -> newest event time seen on it, at most :attr:`max_clock_lead_s` ahead of :attr:`now`."""

    @classmethod
    def for_worker(cls, conf: Settings, intent: IntentModel, pages: PageTable,
                   catalog: ActionCatalog, personas: PersonaModel) -> "SessionProcessor":
        """The processor as a worker runs it: ``conf``'s settings, ``personas`` (the model directory's) as
        the starting shared model, actions from ``catalog``."""
        scorer = Scorer(intent, SharedPersona(personas), conf.top_features, conf.explain_delta,
                        ActionPolicy(catalog, conf.holdout))
        return cls(scorer=scorer, pages=pages, gap_s=conf.session_gap_s, retain_s=conf.session_retain_s,
                   max_future_s=conf.max_future_s, max_clock_lead_s=conf.max_clock_lead_s,
                   max_open_visits=conf.max_open_visits)

    @property
    def personas(self) -> SharedPersona:
        """The shared persona model: the scorer assigns with it, closed visits teach it."""
        return self.scorer.personas

    def restore_index(self, stored: Iterable[tuple[bytes, bytes]]) -> int:
        """Rebuild the in-memory index of open and ended visits, and each partition's event-time clock,
        from the stored states (after a restart or a rebalance); returns the number of states read."""
        self._open, self._ended, self._clock = {}, {}, {}
        wall = self.now().timestamp()
        clock_limit = wall + self.max_clock_lead_s
        found = []
        for key, raw in stored:
            state = _load({key: raw}, key)
            if state is not None and state.partition >= 0:
                found.append((state.last_ts, key, state))
        for last_ts, key, state in sorted(found, key=lambda item: item[0]):
            if state.closed:
                self._ended.setdefault(state.partition, OrderedDict())[key] = (last_ts, wall)
            else:
                self._open.setdefault(state.partition, VisitIndex()).touch(key, last_ts)
            self._clock[state.partition] = min(last_ts, clock_limit)
        return len(found)

    def process(self, records: Sequence[Consumed], states: MutableMapping[bytes, bytes]) -> BatchResult:
        """Fold ``records`` into the visits they belong to and score every visit touched.

        No record can stop the batch: a record that is not a valid event, is dated too far ahead of
        the worker's clock, or fails in any unexpected way becomes a dead letter with the reason.
        Visits are scored before any of them ends, so an ended visit's PersonaEvent and learning
        reflect its final state.
        """
        result = BatchResult()
        touched: dict[bytes, tuple[int, SessionState]] = {}
        ended: list[tuple[bytes, SessionState, bool]] = []
        wall = self.now().timestamp()
        for record in records:
            try:
                self._fold(record, states, touched, ended, result, wall)
            except EventError as exc:
                result.dead_letters.append(self._dead_letter(record, exc.reason))
            except Exception as exc:  # noqa: BLE001 - any failure of one record is that record's dead letter
                result.dead_letters.append(self._dead_letter(record, f"unexpected {type(exc).__name__}: {exc}"))
        self._index(touched)
        result.ended_personas = self._score([(key, state) for key, state, unpublished in ended if unpublished],
                                            result)
        result.personas = dict(self._score([(key, state) for key, (_, state) in touched.items()], result))
        for _, state, _ in ended:
            self._close(state, result)
        self._sweep({r.partition for r in records}, touched, states, result)
        for key, (partition, state) in touched.items():
            result.states[key] = (partition, state.to_bytes())
        return result

    def _fold(self, record: Consumed, states: MutableMapping[bytes, bytes],
              touched: dict[bytes, tuple[int, SessionState]], ended: list[tuple[bytes, SessionState, bool]],
              result: BatchResult, wall: float) -> None:
        """Apply one record to its visit; raise :class:`EventError` if it is not a valid event. A visit
        its session comes back to after the gap goes to ``ended`` (to be closed once the batch is scored),
        with whether the batch touched it (then it is published once more, with its final state)."""
        event = parse_event(record.value)
        if record.key != event.session_id.encode():
            raise EventError("record key must be the event's session_id (partitioning by session)")
        ts = event.ts.timestamp()
        if ts > wall + self.max_future_s:
            raise EventError(f"event time {event.ts.isoformat()} is more than {self.max_future_s:g} s ahead "
                             "of the worker's clock")
        key = record.key
        entry = touched.get(key)
        state = entry[1] if entry is not None else _load(states, key)
        if state is not None and state.partition == record.partition and record.offset <= state.offset:
            result.duplicates += 1  # a record read again (redelivery, or offsets committed late)
            return
        if state is None or state.closed or ts - state.last_ts > self.gap_s:
            if state is not None and not state.closed:
                ended.append((key, state, entry is not None))
            state = start_visit(state, event)
        if is_duplicate(state, event.event_id):
            result.duplicates += 1
            return
        fold(state, event, self.pages)
        state.partition, state.offset = record.partition, record.offset
        if event.type == "purchase":
            self._reward(state, purchased=True)
        if event.type == "page_view" and not state.bot and self.pages.observes(event.page.id):
            self._observe(result, event.page.id, views=1, entrances=int(state.page_views == 1))
        touched[key] = (record.partition, state)
        self._clock[record.partition] = max(self._clock.get(record.partition, -math.inf),
                                            min(ts, wall + self.max_clock_lead_s))

    def _index(self, touched: dict[bytes, tuple[int, SessionState]]) -> None:
        """Index the batch's visits by their last event times (once a batch, not once an event)."""
        for key, (partition, state) in touched.items():
            opened = self._open.get(partition)
            if opened is None:
                opened = self._open[partition] = VisitIndex()
            opened.touch(key, state.last_ts)
            if len(opened) > self.max_open_visits:
                opened.pop_oldest()  # forgotten, not closed: it closes when its session comes back

    def _score(self, visits: list[tuple[bytes, SessionState]], result: BatchResult) -> list[tuple[bytes, bytes]]:
        """(session key, PersonaEvent JSON) of ``visits``, scored together; if that fails, visit by visit,
        and a visit that cannot be scored is a dead letter (its events stay folded)."""
        if not visits:
            return []
        try:
            return list(zip((key for key, _ in visits), self.scorer.score(visits)))
        except Exception:  # noqa: BLE001 - find the visit that fails; the others are published
            out = []
            for key, state in visits:
                try:
                    out += zip([key], self.scorer.score([(key, state)]))
                except Exception as exc:  # noqa: BLE001
                    result.dead_letters.append(DeadLetter.for_payload(
                        None, reason=f"visit could not be scored: unexpected {type(exc).__name__}: {exc}",
                        topic="", partition=state.partition, offset=state.offset, received_at=self.now()))
            return out

    def _dead_letter(self, record: Consumed, reason: str) -> DeadLetter:
        return DeadLetter.for_payload(record.value, reason=reason, topic=record.topic, partition=record.partition,
                                      offset=record.offset, received_at=self.now())

    def _sweep(self, partitions: set[int], touched: dict[bytes, tuple[int, SessionState]],
               states: MutableMapping[bytes, bytes], result: BatchResult) -> None:
        """End the visits of ``partitions`` idle for longer than the gap in the partition's event time,
        and delete the state of visits ended longer than :attr:`retain_s` ago."""
        for partition in partitions:
            clock = self._clock.get(partition, -math.inf)
            opened = self._open.get(partition, VisitIndex())
            ended = self._ended.setdefault(partition, OrderedDict())
            wall = self.now().timestamp()
            for key, last_ts in list(opened.pop_idle(clock - self.gap_s)):
                state = touched[key][1] if key in touched else _load(states, key)
                if state is None or state.closed:
                    continue
                self._close(state, result)
                ended[key] = (last_ts, wall)
                ended.move_to_end(key)
                if key not in touched:
                    result.states[key] = (partition, state.to_bytes())
            while ended and _expired(next(iter(ended.values())), clock - self.gap_s - self.retain_s,
                                     wall - self.retain_wall_s):
                key, _ = ended.popitem(last=False)
                if key in touched or key in self._open.get(partition, ()):
                    continue  # the session came back: its new visit is open
                result.states[key] = (partition, None)
            while len(ended) > self.max_open_visits:
                ended.popitem(last=False)

    @staticmethod
    def _observe(result: BatchResult, page_id: str, **counts: int) -> None:
        observed = result.page_observations.get(page_id)
        if observed is None:
            result.page_observations[page_id] = counts
            return
        for name, n in counts.items():
            observed[name] = observed.get(name, 0) + n

    def _close(self, state: SessionState, result: BatchResult) -> None:
        """End a visit: the persona model learns it; its unrewarded decisions earn 0; its exit page (and
        bounce) feed page statistics (unless it is a bot's, or the page is catalogued)."""
        state.closed = True
        result.closed += 1
        self._reward(state, purchased=False)
        if state.bot:
            return
        self.personas.learn(persona_features(state, state.intent))
        if state.exit_page and self.pages.observes(state.exit_page):
            self._observe(result, state.exit_page, exits=1, bounces=int(state.page_views == 1))

    def _reward(self, state: SessionState, purchased: bool) -> None:
        """Reward the visit's decisions not rewarded yet (each once); a bot's are dropped unlearned."""
        for persona, band, action_id, policy in settle(state):
            if not state.bot:
                self.personas.reward((persona, band), action_id, purchased, policy)


def _expired(ended: tuple[float, float], event_horizon: float, wall_horizon: float) -> bool:
    last_ts, ended_wall = ended
    return last_ts < event_horizon and ended_wall < wall_horizon


def _load(states: MutableMapping[bytes, bytes], key: bytes) -> SessionState | None:
    """The stored state of ``key``; None if there is none, or if it was written in another format
    (the session then starts a new visit)."""
    raw = states.get(key)
    if raw is None:
        return None
    try:
        return SessionState.from_bytes(raw)
    except (TypeError, ValueError):
        return None
