"""Cross-worker merging: every worker learns into a copy of the shared model; :func:`absorb` folds
the copies' learning into the next shared model.

A learner (:func:`learner`) remembers the :class:`Base` it was copied from. :func:`absorb` adds each
learner's scaler moments since its base exactly, and moves every centroid (in raw feature units) by
the learners' displacements since their bases, weighted by the sessions each learned into that
cluster. Learners are copies of a shared model, so cluster ``i`` is the same persona on every
worker, and ids and names are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from models.persona.features import FEATURES
from models.persona.moments import Moments, combine, mean_std, moments_of, scaler_from, subtract, zero

if TYPE_CHECKING:
    from models.persona.model import PersonaModel


@dataclass(slots=True)
class Base:
    """The state a model's learning is measured from (what it was when :func:`rebase` ran)."""

    version: str
    counts: list[int]
    """Sessions learned into each cluster."""
    moments: Moments
    raw_centers: np.ndarray | None
    """Centroids in raw feature units; ``None`` before the warm-up ends."""

    @classmethod
    def empty(cls, n_personas: int) -> Base:
        """The base of a cold model: nothing learned."""
        return cls("", [0] * n_personas, zero(), None)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "counts": list(self.counts),
                "centers": self.raw_centers.tolist() if self.raw_centers is not None else [],
                "moments": {f: list(m) for f, m in self.moments.items()}}

    @classmethod
    def from_json(cls, s: Mapping[str, Any]) -> Base:
        raw = s.get("centers")
        return cls(s["version"], list(s["counts"]), {f: tuple(m) for f, m in s["moments"].items()},
                   np.array(raw, dtype=float) if raw else None)


def rebase(model: PersonaModel) -> PersonaModel:
    """Mark ``model``'s current state as the base that :func:`absorb` measures its learning from."""
    model.base = Base(model.version, list(model.counts), moments_of(model.scaler),
                      model.raw_centers() if model.ready else None)
    return model


def learner(model: PersonaModel) -> PersonaModel:
    """A copy of ``model`` to learn into; what it learns from here on is what :func:`absorb` takes from it."""
    return rebase(type(model).from_bytes(model.to_bytes()))


def learned(model: PersonaModel) -> int:
    """Sessions ``model`` learned since its base (warm-up sessions included)."""
    now = moments_of(model.scaler)
    return int(max(now[f][0] - model.base.moments[f][0] for f in FEATURES))


def absorb(shared: PersonaModel, learners: Sequence[bytes | PersonaModel]) -> PersonaModel:
    """The next shared model: ``shared`` plus what each learner learned since its own base.

    Scaler moments since each learner's base are added exactly. Each centroid moves (in raw units)
    by the learners' displacements since their bases, averaged with weights = sessions each learned
    into that cluster. Cluster ids and names are kept. A learner based on an older shared model
    still counts: its displacement moves the current centroids. The order of ``learners`` does not
    matter. The result has generation + 1 and is its own base.
    """
    if not shared.ready:
        raise ValueError("the shared persona model has not finished its warm-up")
    cls = type(shared)
    models = sorted((m if isinstance(m, cls) else cls.from_bytes(m) for m in learners), key=cls.to_bytes)
    k = shared.n_personas
    moments = moments_of(shared.scaler)
    shift = np.zeros((k, len(FEATURES)))
    weight = np.zeros(k)
    for m in models:
        if m.n_personas != k:
            raise ValueError(f"a learner has {m.n_personas} personas, the shared model {k}")
        now = moments_of(m.scaler)
        moments = {f: combine(moments[f], subtract(now[f], m.base.moments[f])) for f in FEATURES}
        if m.ready and m.base.raw_centers is not None:
            sessions = np.maximum(np.array(m.counts, dtype=float) - np.array(m.base.counts, dtype=float), 0.0)
            shift += sessions[:, None] * (m.raw_centers() - m.base.raw_centers)
            weight += sessions
    raw = shared.raw_centers() + shift / np.maximum(weight, 1.0)[:, None]
    mean, std = mean_std(moments)
    C = np.where(std > 0, (raw - mean) / np.where(std > 0, std, 1.0), 0.0)

    out = cls(k, min_rate=shared.min_rate, clip=shared.clip, warmup=shared.warmup, seed=shared.seed)
    out.scaler = scaler_from(moments)
    out.set_centers(C)
    out.counts = [int(c + w) for c, w in zip(shared.counts, weight)]
    out.names = list(shared.names)
    out.generation = shared.generation + 1
    return rebase(out)
