"""Sessionization and scoring of a batch of raw records: the pure core the session agent wires.

Visits are cut in event time by an inactivity gap; each visit's state is folded event by event,
then every visit touched by the batch is scored once and published, so the newest PersonaEvent
of a visit always reflects all of its events processed so far.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, MutableMapping, Sequence

from models.features import SessionState, fold, is_duplicate, session_features, start_visit
from models.intent import IntentModel
from models.persona import PersonaModel, persona_features, recommend
from schemas.dead_letter import DeadLetter
from schemas.events import EventError, parse_event
from schemas.persona import FeatureContribution, PersonaEvent
from stream.pages import PageTable


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


@dataclass
class SessionProcessor:
    intent: IntentModel
    persona: PersonaModel
    pages: PageTable
    gap_s: float = 1800.0
    top_features: int = 3
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

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
            if key in touched:
                state = touched[key][1]
            else:
                raw = states.get(key)
                state = None if raw is None else SessionState.from_bytes(raw)
            ts = event.ts.timestamp()
            if state is None or ts - state.last_ts > self.gap_s:
                if state is not None:
                    self._observe_end(state, result)
                state = start_visit(state, event)
            if is_duplicate(state, event.event_id):
                result.duplicates += 1
                continue
            fold(state, event, self.pages)
            if event.type == "page_view":
                self._observe(result, event.page.id, views=1, entrances=int(state.n_pages == 1))
            touched[key] = (record.partition, state)
        if touched:
            self._score(touched, result)
        return result

    def _score(self, touched: dict[bytes, tuple[int, SessionState]], result: BatchResult) -> None:
        keys = list(touched)
        rows = [session_features(touched[k][1], self.intent.vocabulary) for k in keys]
        scores = self.intent.score(rows)
        contributions = self.intent.contributions(rows, self.top_features) if self.top_features else [[]] * len(rows)
        for key, score, contrib in zip(keys, scores, contributions):
            partition, state = touched[key]
            score = float(score)
            band = self.intent.band(score)
            x = persona_features(state, score)
            self.persona.learn_one(x)
            assignment = self.persona.predict_one(x)
            result.personas.append(PersonaEvent(
                session_id=key.decode(), visit=state.visit,
                event_time=datetime.fromtimestamp(state.last_ts, timezone.utc),
                persona=assignment.name, persona_id=assignment.persona_id,
                persona_confidence=assignment.confidence, intent_score=score, intent_band=band,
                top_features=[FeatureContribution(feature=f, contribution=c) for f, c in contrib],
                recommended_action=recommend(assignment.name, band),
                intent_model_version=self.intent.version, persona_model_version=self.persona.version,
                events_seen=state.events, page_views=state.n_pages))
            result.states[key] = (partition, state.to_bytes())

    @staticmethod
    def _observe(result: BatchResult, page_id: str, **counts: int) -> None:
        result.page_observations.setdefault(page_id, Counter()).update(counts)

    def _observe_end(self, state: SessionState, result: BatchResult) -> None:
        """A visit ended by the inactivity gap: its exit page (and bounce) feed page statistics."""
        if state.exit_page:
            self._observe(result, state.exit_page, exits=1, bounces=int(state.n_pages == 1))
