"""Sessionization and scoring of a batch of raw records: the pure core the session agent wires.

Visits are cut in event time by an inactivity gap; each visit's state is folded event by event,
then every visit touched by the batch is scored once and published, so the newest PersonaEvent
of a visit always reflects all of its events processed so far.

A visit ends when its session comes back after the gap, or when the partition's event time (the
newest event seen on it) passes the visit's last event by the gap. An ended visit is learned from
once by the persona model and feeds the exit and bounce statistics of its last page. The index of
open visits lives in memory: after a restart, visits still open are closed when they come back.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, MutableMapping, Sequence

from models.features import SessionState, fold, is_duplicate, session_features, start_visit
from models.intent import IntentModel
from models.persona import PersonaModel, persona_features, recommend
from schemas.dead_letter import DeadLetter
from schemas.events import EventError, parse_event
from schemas.persona import FeatureContribution, PersonaEvent
from stream.config import Settings
from stream.pages import PageTable
from stream.persona_sync import SharedPersona


@dataclass(frozen=True)
class Record:
    """One consumed Kafka record, as the processor needs it."""

    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int


@dataclass
class BatchResult:
    personas: list[PersonaEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    states: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    """session key -> (partition, serialized state) to write to the table and its changelog."""
    page_observations: dict[str, Counter] = field(default_factory=dict)
    duplicates: int = 0
    closed: int = 0
    """visits ended in this batch."""


@dataclass
class SessionProcessor:
    intent: IntentModel
    personas: SharedPersona
    pages: PageTable
    gap_s: float = 1800.0
    top_features: int = 3
    explain_delta: float = 0.1
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    _open: dict[int, OrderedDict[bytes, float]] = field(default_factory=dict, repr=False)
    """partition -> open visits (session key -> last event time), least recently touched first."""
    _clock: dict[int, float] = field(default_factory=dict, repr=False)
    """partition -> newest event time seen on it."""

    @classmethod
    def for_worker(cls, conf: Settings, intent: IntentModel, pages: PageTable) -> "SessionProcessor":
        """The processor as a worker runs it: ``conf``'s settings, the shipped persona snapshot as the
        starting shared model."""
        return cls(intent=intent, personas=SharedPersona(PersonaModel.default()), pages=pages,
                   gap_s=conf.session_gap_s, top_features=conf.top_features, explain_delta=conf.explain_delta)

    def process(self, records: Sequence[Record], states: MutableMapping[bytes, bytes]) -> BatchResult:
        result = BatchResult()
        touched: dict[bytes, tuple[int, SessionState]] = {}
        for record in records:
            try:
                event = parse_event(record.value)
                if record.key != event.session_id.encode():
                    raise EventError("record key must be the event's session_id (partitioning by session)")
            except EventError as exc:
                result.dead_letters.append(DeadLetter.for_payload(
                    record.value, reason=exc.reason, topic=record.topic, partition=record.partition,
                    offset=record.offset, received_at=self.now()))
                continue
            key = record.key
            state = touched[key][1] if key in touched else _load(states, key)
            if state is not None and state.partition == record.partition and record.offset <= state.offset:
                result.duplicates += 1  # a record read again (redelivery, or offsets committed late)
                continue
            ts = event.ts.timestamp()
            if state is None or state.closed or ts - state.last_ts > self.gap_s:
                if state is not None and not state.closed:
                    self._close(state, result)
                state = start_visit(state, event)
            if is_duplicate(state, event.event_id):
                result.duplicates += 1
                continue
            fold(state, event, self.pages)
            state.partition, state.offset = record.partition, record.offset
            if event.type == "page_view":
                self._observe(result, event.page.id, views=1, entrances=int(state.page_views == 1))
            touched[key] = (record.partition, state)
            opened = self._open.setdefault(record.partition, OrderedDict())
            opened[key] = state.last_ts
            opened.move_to_end(key)
            self._clock[record.partition] = max(self._clock.get(record.partition, -math.inf), ts)
        self._sweep({r.partition for r in records}, touched, states, result)
        if touched:
            self._score(touched, result)
        return result

    def _sweep(self, partitions: set[int], touched: dict[bytes, tuple[int, SessionState]],
               states: MutableMapping[bytes, bytes], result: BatchResult) -> None:
        """Close the visits of ``partitions`` idle for longer than the gap in the partition's event time."""
        for partition in partitions:
            opened = self._open.get(partition)
            horizon = self._clock.get(partition, -math.inf) - self.gap_s
            while opened and next(iter(opened.values())) < horizon:
                key, _ = opened.popitem(last=False)
                state = touched[key][1] if key in touched else _load(states, key)
                if state is None or state.closed:
                    continue
                self._close(state, result)
                if key not in touched:
                    result.states[key] = (partition, state.to_bytes())

    def _score(self, touched: dict[bytes, tuple[int, SessionState]], result: BatchResult) -> None:
        keys = list(touched)
        rows = [session_features(touched[k][1], self.intent.vocabulary) for k in keys]
        scores = [float(s) for s in self.intent.score(rows)]
        bands = [self.intent.band(s) for s in scores]
        self._explain(keys, touched, rows, scores, bands)
        assignments = self.personas.assign([persona_features(touched[k][1], s) for k, s in zip(keys, scores)])
        for key, score, band, assignment in zip(keys, scores, bands, assignments):
            partition, state = touched[key]
            state.intent = score
            result.personas.append(PersonaEvent(
                session_id=key.decode(), visit=state.visit,
                event_time=datetime.fromtimestamp(state.last_ts, timezone.utc),
                persona=assignment.name, persona_id=assignment.persona_id,
                persona_confidence=assignment.confidence, intent_score=score, intent_band=band,
                top_features=[FeatureContribution(feature=f, contribution=c) for f, c in state.top],
                explained_score=state.explained if state.top else None,
                recommended_action=recommend(assignment.name, band),
                intent_model_version=self.intent.version, persona_model_version=assignment.version,
                events_seen=state.events, page_views=state.page_views))
            result.states[key] = (partition, state.to_bytes())

    def _explain(self, keys: list[bytes], touched: dict[bytes, tuple[int, SessionState]], rows: list[list[float]],
                 scores: list[float], bands: list[str]) -> None:
        """TreeSHAP top features for medium- and high-intent visits whose band changed or whose score moved
        by more than ``explain_delta`` since they were last explained (TreeSHAP costs ~500 compiled
        scores); a low-intent visit carries none."""
        if not self.top_features:
            return
        stale = []
        for i, key in enumerate(keys):
            state = touched[key][1]
            if bands[i] == "low":
                state.explained, state.top = -1.0, []
            elif (state.explained < 0 or abs(scores[i] - state.explained) > self.explain_delta
                  or self.intent.band(state.explained) != bands[i]):
                stale.append(i)
        if not stale:
            return
        for i, top in zip(stale, self.intent.contributions([rows[i] for i in stale], self.top_features)):
            state = touched[keys[i]][1]
            state.explained = scores[i]
            state.top = [[feature, round(value, 4)] for feature, value in top]

    @staticmethod
    def _observe(result: BatchResult, page_id: str, **counts: int) -> None:
        result.page_observations.setdefault(page_id, Counter()).update(counts)

    def _close(self, state: SessionState, result: BatchResult) -> None:
        """End a visit: the persona model learns it; its exit page (and bounce) feed page statistics."""
        state.closed = True
        self.personas.learn(persona_features(state, state.intent))
        result.closed += 1
        if state.exit_page:
            self._observe(result, state.exit_page, exits=1, bounces=int(state.page_views == 1))


def _load(states: MutableMapping[bytes, bytes], key: bytes) -> SessionState | None:
    raw = states.get(key)
    return None if raw is None else SessionState.from_bytes(raw)
