"""One persona model and one set of action posteriors for all workers: serve the shared ones, learn
locally, hand learning over.

Every worker assigns personas with ``serving``, the newest shared model, so all workers report the
same ``persona_model_version``. Finished visits teach ``learner``, this worker's copy. A timer hands
the learning over as learner snapshots on the deltas topic; the worker that owns that topic's only
partition absorbs them into the next shared model (:meth:`PersonaModel.absorb`) and publishes it to
the compacted model topic, which every worker reads and adopts, also after a restart.

The action bandit rides on the same two topics: workers decide with ``bandit``, the shared posteriors
(record key :data:`BANDIT_KEY` on the model topic), count rewarded decisions in ``rewards`` and hand
them over as :class:`~models.bandit.Handover` records (key :data:`BANDIT_KEY` on the learning topic);
the merging worker absorbs them with the persona learners and publishes the next posteriors.
"""

from __future__ import annotations

import uuid
from typing import Mapping, Sequence

from models.bandit import BetaBandit, Handover
from models.persona import Assignment, PersonaModel

PERSONA_KEY = b"persona"
BANDIT_KEY = b"bandit"
"""Record keys on the model and learning topics (a learning record without a key is a persona learner)."""


class SharedPersona:
    """This worker's side of the shared persona model (pure: the Kafka wiring is in the agents)."""

    def __init__(self, model: PersonaModel, bandit: BetaBandit | None = None) -> None:
        self.serving = model
        self.learner = model.learner()
        self._pending: list[PersonaModel] = []
        self.bandit = bandit or BetaBandit()
        """The shared action posteriors decisions are drawn from."""
        self.rewards = BetaBandit()
        """Rewards learned since the last hand-over."""
        self.source = uuid.uuid4().hex[:16]
        """This worker run's name in its hand-overs."""
        self._handovers = 0

    def assign(self, xs: Sequence[Mapping[str, float]]) -> list[Assignment]:
        return self.serving.predict_many(xs)

    def learn(self, x: Mapping[str, float]) -> None:
        self.learner.learn_one(x)

    def adopt(self, model: PersonaModel) -> bool:
        """Serve ``model`` if it is newer; learning done on the old model is kept for the next hand-over."""
        if model.version == self.serving.version or model.generation < self.serving.generation:
            return False
        if self.learner.learned:
            self._pending.append(self.learner)
        self.serving = model
        self.learner = model.learner()
        return True

    def take_learning(self) -> list[bytes]:
        """Snapshots of everything learned since the last hand-over (empty if nothing was learned)."""
        if self.learner.learned:
            self._pending.append(self.learner)
            self.learner = self.serving.learner()
        taken, self._pending = [m.to_bytes() for m in self._pending], []
        return taken

    def absorb(self, snapshots: list[PersonaModel]) -> PersonaModel:
        """The next shared model from learner snapshots (the merging worker's job); served at once."""
        merged = self.serving.absorb(snapshots)
        self.adopt(merged)
        return merged

    def reward(self, context: tuple[str, str], action_id: str, purchased: bool, policy: str) -> None:
        """The outcome of one decision (learned locally until the next hand-over)."""
        self.rewards.learn_one(context, action_id, purchased, policy)

    def take_rewards(self) -> bytes | None:
        """A hand-over of the rewards learned since the last one (None if there are none)."""
        if not self.rewards.learned:
            return None
        handover = Handover(self.source, self._handovers, self.rewards)
        self.rewards, self._handovers = BetaBandit(), self._handovers + 1
        return handover.to_bytes()

    def adopt_bandit(self, bandit: BetaBandit) -> bool:
        """Decide with ``bandit`` if it is newer than the posteriors served."""
        if bandit.generation <= self.bandit.generation:
            return False
        self.bandit = bandit
        return True

    def absorb_rewards(self, handovers: list[Handover]) -> BetaBandit:
        """The next shared posteriors from reward hand-overs (the merging worker's job); served at once."""
        merged = self.bandit.absorb(handovers)
        self.adopt_bandit(merged)
        return merged

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the compacted model topic: adopt the persona model or posteriors it holds."""
        if value is None:
            return
        if key == BANDIT_KEY:
            self.adopt_bandit(BetaBandit.from_bytes(value))
        else:
            self.adopt(snapshot(value))


def snapshot(raw: bytes) -> PersonaModel:
    """A persona model from a snapshot record; ValueError names what is wrong with it."""
    try:
        return PersonaModel.from_bytes(raw)
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"not a persona model snapshot: {exc!r}") from exc
