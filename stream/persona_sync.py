"""One persona model for all workers: serve the shared model, learn locally, hand learning over.

Every worker assigns personas with ``serving``, the newest shared model, so all workers report the
same ``persona_model_version``. Finished visits teach ``learner``, this worker's copy. A timer hands
the learning over as learner snapshots on the deltas topic; the worker that owns that topic's only
partition absorbs them into the next shared model (:meth:`PersonaModel.absorb`) and publishes it to
the compacted model topic, which every worker reads and adopts, also after a restart.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from models.persona import Assignment, PersonaModel


class SharedPersona:
    """This worker's side of the shared persona model (pure: the Kafka wiring is in the agents)."""

    def __init__(self, model: PersonaModel) -> None:
        self.serving = model
        self.learner = model.learner()
        self._pending: list[PersonaModel] = []

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

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the compacted model topic: adopt the model it holds."""
        if value is not None:
            self.adopt(snapshot(value))


def snapshot(raw: bytes) -> PersonaModel:
    """A persona model from a snapshot record; ValueError names what is wrong with it."""
    try:
        return PersonaModel.from_bytes(raw)
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"not a persona model snapshot: {exc!r}") from exc
