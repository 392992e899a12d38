"""Scoring of visits: intent score, explanation, persona and action decision -> PersonaEvent.

Pure (no Kafka): :class:`Scorer` takes the states of the visits a batch touched, scores them in one
call of the compiled intent model, explains the medium- and high-intent ones (TreeSHAP, in a thread
meanwhile), assigns their personas with the shared persona model, decides their actions with the
shared action posteriors (:mod:`models.bandit`) and encodes one :class:`~schemas.persona.PersonaEvent` per visit.

The PersonaEvent is written with orjson from values the scorer made, not constructed and dumped by
pydantic (which cost ~8 µs a visit): the model stays the schema, and the processor's tests check
that every event it writes validates and dumps back to the same bytes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import orjson

from models.actions import default_catalog
from models.bandit import ActionPolicy, BetaBandit, Decision
from models.features import SessionState
from models.intent import IntentModel
from models.persona import Assignment, persona_features
from stream.pages import compact_json
from stream.persona_sync import SharedPersona


@dataclass
class Scorer:
    intent: IntentModel
    personas: SharedPersona
    top_features: int = 3
    """TreeSHAP features per explained visit; 0 turns explanations off."""
    explain_delta: float = 0.1
    """Re-explain a visit when its score moves by more than this since its last explanation."""
    actions: ActionPolicy = field(default_factory=lambda: ActionPolicy(default_catalog()))
    """Decides each visit's action from the catalog and the shared posteriors (``personas.bandit``)."""
    _explainer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "treeshap"), repr=False)
    """Runs TreeSHAP (LightGBM releases the GIL) on another core while personas and actions are decided."""

    def score(self, visits: Sequence[tuple[bytes, SessionState]]) -> list[bytes]:
        """The PersonaEvent (JSON) of each ``(session key, state)``, in their order (a session may have
        several visits among them); updates each state's ``intent``, ``explained``, ``top`` and ``decision``
        in place."""
        if not visits:
            return []
        states = [state for _, state in visits]
        rows = [self.intent.row(state) for state in states]
        scores = [float(s) for s in self.intent.score(rows)]
        bands = [self.intent.band(s) for s in scores]
        stale = self._stale(states, scores, bands)
        explaining = (self._explainer.submit(self.intent.contributions, [rows[i] for i in stale], self.top_features)
                      if stale else None)
        assignments = self.personas.assign([persona_features(state, s) for state, s in zip(states, scores)])
        bandit = self.personas.bandit
        decisions = [self.actions.decide(key.decode(), state, assignment.name, band, bandit)
                     for (key, state), band, assignment in zip(visits, bands, assignments)]

        def event(i: int) -> bytes:
            return self._event(visits[i][0], states[i], scores[i], bands[i], assignments[i], decisions[i], bandit)

        waiting = set(stale)
        out = {i: event(i) for i in range(len(visits)) if i not in waiting}  # built while TreeSHAP runs
        if explaining is not None:
            for i, top in zip(stale, explaining.result()):
                states[i].explained = scores[i]
                states[i].top = [[feature, round(value, 4)] for feature, value in top]
                out[i] = event(i)
        return [out[i] for i in range(len(visits))]

    def _event(self, key: bytes, state: SessionState, score: float, band: str, assignment: Assignment,
               decision: Decision, bandit: BetaBandit) -> bytes:
        """The visit's :class:`~schemas.persona.PersonaEvent` as JSON, its fields in the model's order."""
        state.intent = score
        return compact_json({
            "session_id": key.decode(), "visit": state.visit,
            "event_time": datetime.fromtimestamp(state.last_ts, timezone.utc),
            "persona": assignment.name, "persona_id": assignment.persona_id,
            "persona_confidence": assignment.confidence, "intent_score": score, "intent_band": band,
            "top_features": [{"feature": f, "contribution": c} for f, c in state.top],
            "explained_score": state.explained if state.top else None,
            "recommended_action": decision.action.text, "decision_id": decision.decision_id,
            "action_id": decision.action.action_id, "policy": decision.policy, "propensity": decision.propensity,
            "intent_model_version": self.intent.version, "persona_model_version": assignment.version,
            "bandit_model_version": bandit.version,
            "events_seen": state.events, "page_views": state.page_views, "bot": state.bot,
        }, option=orjson.OPT_UTC_Z)

    def _stale(self, states: list[SessionState], scores: list[float], bands: list[str]) -> list[int]:
        """The visits to explain (TreeSHAP top features): medium- and high-intent visits whose band changed
        or whose score moved by more than ``explain_delta`` since they were last explained (TreeSHAP costs
        hundreds of compiled scores); a low-intent visit carries none."""
        if not self.top_features:
            return []
        stale = []
        for i, state in enumerate(states):
            if bands[i] == "low":
                state.explained, state.top = -1.0, []
            elif (state.explained < 0 or abs(scores[i] - state.explained) > self.explain_delta
                  or self.intent.band(state.explained) != bands[i]):
                stale.append(i)
        return stale
