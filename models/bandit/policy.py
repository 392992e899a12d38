"""Which action a visit gets: a holdout share by session hash, Thompson sampling for the rest.

A visit gets a decision when it first has a persona and again whenever its persona or intent band
changes; in between the decision is sticky (kept in :attr:`SessionState.decision`). Visits whose
session id hashes below ``holdout`` always get the context's default action (propensity 1). The
others get a Thompson draw from the shared posteriors whose uniforms are a keyed hash of (session id,
visit, decision number), so a batch processed again decides the same way given the same posteriors. Each
decision is also queued in :attr:`SessionState.unrewarded` until a purchase or the visit's end
rewards it (:func:`settle`).

>>> from models.actions import default_catalog
>>> from models.bandit import BetaBandit
>>> from models.features import SessionState
>>> policy, state = ActionPolicy(default_catalog(), holdout=0.0), SessionState()
>>> first = policy.decide("s-1", state, "High-Intent Buyer", "high", BetaBandit())
>>> first.policy, round(first.propensity, 3), first.action.action_id
('bandit', 0.333, 'free-shipping')
>>> policy.decide("s-1", state, "High-Intent Buyer", "high", BetaBandit()) == first  # sticky
True
>>> policy.decide("s-1", state, "High-Intent Buyer", "medium", BetaBandit()).decision_id != first.decision_id
True
>>> [entry[2] for entry in settle(state)], state.unrewarded
(['free-shipping', 'urgency'], [])
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b

import numpy as np

from models.actions import Action, ActionCatalog
from models.bandit.thompson import BetaBandit
from models.features import SessionState

MAX_UNREWARDED = 32
"""Decisions of one visit awaiting their reward; beyond it the oldest is dropped unlearned."""


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: str
    action: Action
    policy: str
    """``bandit`` or ``holdout``."""
    propensity: float
    """P(this policy picks this action in this context) when the decision was made."""


class ActionPolicy:
    """Sticky per-visit decisions over a catalog: ``holdout`` share by session hash, else Thompson sampling."""

    def __init__(self, catalog: ActionCatalog, holdout: float = 0.1) -> None:
        if not 0.0 <= holdout <= 1.0:
            raise ValueError(f"holdout must be a share in [0, 1], not {holdout}")
        self.catalog = catalog
        self.holdout = holdout

    def in_holdout(self, session_id: str) -> bool:
        """The session is in the holdout: a fixed hash of its id falls below the holdout share."""
        return _unit(b"holdout", session_id) < self.holdout

    def decide(self, session_id: str, state: SessionState, persona: str, band: str, bandit: BetaBandit) -> Decision:
        """The visit's decision for ``persona`` in ``band``: the current one if its context is unchanged,
        else a new one (recorded in ``state``)."""
        if state.decision:
            number, d_persona, d_band, action_id, policy, propensity = state.decision
            action = self.catalog.action(persona, band, action_id) if (d_persona, d_band) == (persona, band) else None
            if action is not None:
                return Decision(decision_id(session_id, state.visit, number), action, policy, propensity)
        number = state.decision[0] + 1 if state.decision else 0
        arms = self.catalog.arms(persona, band)
        if self.in_holdout(session_id):
            action, policy, propensity = arms[0], "holdout", 1.0
        else:
            ids = [a.action_id for a in arms]
            uniforms = _uniforms(f"{session_id}\x1f{state.visit}\x1f{number}", len(ids))
            chosen = bandit.predict_one((persona, band), ids, uniforms)
            action, policy = arms[ids.index(chosen)], "bandit"
            propensity = bandit.propensities((persona, band), ids)[ids.index(chosen)]
        state.decision = [number, persona, band, action.action_id, policy, propensity]
        state.unrewarded.append([persona, band, action.action_id, policy])
        del state.unrewarded[:-MAX_UNREWARDED]
        return Decision(decision_id(session_id, state.visit, number), action, policy, propensity)


def settle(state: SessionState) -> list[list]:
    """Take the visit's unrewarded decisions ([persona, band, action_id, policy] each): the caller
    learns their reward (1 at a purchase, 0 when the visit ends); each is taken once."""
    taken, state.unrewarded = state.unrewarded, []
    return taken


def decision_id(session_id: str, visit: int, number: int) -> str:
    """A stable id of a visit's ``number``-th decision (16 hex digits)."""
    return blake2b(f"{session_id}\x1f{visit}\x1f{number}".encode(), digest_size=8).hexdigest()


def _unit(salt: bytes, text: str) -> float:
    """A uniform number in [0, 1) from a hash of ``text``."""
    return int.from_bytes(blake2b(text.encode(), digest_size=8, key=salt).digest(), "big") / 2**64


def _uniforms(text: str, n: int) -> np.ndarray:
    """``n`` independent uniform numbers in (0, 1) from keyed hashes of ``text`` (8 per hash), 53 bits each."""
    digest = b"".join(blake2b(f"{text}\x1f{block}".encode(), key=b"decide").digest() for block in range((n + 7) // 8))
    return ((np.frombuffer(digest, dtype=">u8")[:n] >> 11) + 0.5) / 2**53
