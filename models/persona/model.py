"""The persona estimator: online River clustering of finished sessions into named, stable segments.

A :class:`river.preprocessing.StandardScaler` feeds a :class:`river.cluster.KMeans`. Standardized
values are clipped to ``±clip`` σ before learning, so one extreme or malformed session cannot drag
a centroid, and multiplied by their :data:`~models.persona.features.WEIGHTS` (River's centers hold
these weighted values; :meth:`PersonaModel.centers` gives them in σ). The KMeans step for a cluster
is ``max(1/(n_c+1), min_rate)`` (sequential/MacQueen k-means with a floor that keeps it adapting to
drift), applied through River's ``halflife`` parameter. A cold model buffers ``warmup`` sessions,
seeds its centers with k-means++ on them and names them once by
:func:`~models.persona.naming.rule_names`; names then follow clusters by index.
:meth:`PersonaModel.default` starts from the shipped UCI-trained snapshot instead.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import orjson
from river import cluster, preprocessing

from models.persona import merge
from models.persona.features import FEATURES, LOWER, UPPER, WEIGHT, WEIGHTS, bounded, clip
from models.persona.moments import mean_std, moments_of, scaler_from
from models.persona.naming import UNASSIGNED, rule_names

ARTIFACT = Path(__file__).parents[1] / "artifacts" / "persona.json"
"""The shipped snapshot, trained on UCI Online Shoppers sessions
(``python -m models.training.persona_eval --artifact``)."""
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Assignment:
    """A session's persona under one model version."""

    persona_id: int
    """Cluster index, -1 while the model is warming up."""
    name: str
    confidence: float
    """1 - d₁/d₂ for the distances to the nearest and second nearest centroid: 0 on a boundary, 1 on a centroid."""
    version: str


class PersonaModel:
    """Online persona clustering: StandardScaler → clip ±``clip`` σ → River KMeans, with named clusters.

    Parameters: ``n_personas`` clusters (5 to 7); ``min_rate``, the smallest KMeans step; ``clip``,
    the bound in σ on standardized values; ``warmup``, sessions buffered before the centers are
    seeded; ``seed`` for the k-means++ seeding.

    >>> from models.persona import FEATURES, PersonaModel
    >>> def session(**x):
    ...     return {f: x.get(f, 0.0) for f in FEATURES}
    >>> visits = [session(pages=0.7, dwell=0.5, product_share=1.0, bounce=1.0, exit=1.0),
    ...           session(pages=3.0, dwell=4.0, product_share=0.9, admin_share=0.1, value=3.0, intent=0.9),
    ...           session(pages=3.5, dwell=4.5, product_share=1.0, intent=0.1),
    ...           session(pages=2.0, dwell=3.0, product_share=0.2, admin_share=0.8, intent=0.1),
    ...           session(pages=2.0, dwell=3.5, product_share=0.2, info_share=0.8)]
    >>> model = PersonaModel(5, warmup=10)
    >>> model.predict_one(visits[0]).name
    'Unassigned'
    >>> for x in visits * 2:
    ...     model.learn_one(x)
    >>> model.names
    ['Info Seeker', 'Researcher', 'High-Intent Buyer', 'Bouncer', 'Account & Cart Visitor']
    >>> a = model.predict_one(session(pages=3.2, dwell=4.0, product_share=1.0, value=2.5, intent=0.8))
    >>> a.name, round(a.confidence, 2)
    ('High-Intent Buyer', 0.77)
    """

    def __init__(self, n_personas: int = 6, *, min_rate: float = 0.002, clip: float = 5.0,
                 warmup: int = 300, seed: int = 7) -> None:
        if not 5 <= n_personas <= 7:
            raise ValueError(f"n_personas must be 5 to 7, not {n_personas}")
        self.n_personas = n_personas
        self.min_rate = min_rate
        self.clip = clip
        self.warmup = warmup
        self.seed = seed
        self.scaler = preprocessing.StandardScaler()
        self.kmeans = cluster.KMeans(n_clusters=n_personas, halflife=1.0, seed=seed)
        self.names: list[str] = []
        self.counts = [0] * n_personas
        """Sessions learned into each cluster (the warm-up's k-means labels included)."""
        self.generation = 0
        """How many :meth:`absorb` steps led to this model."""
        self.base = merge.Base.empty(n_personas)
        """Where :meth:`absorb` measures this model's learning from (see :mod:`models.persona.merge`)."""
        self._buffer: list[dict[str, float]] = []
        self._version: str | None = None

    # -- learning --

    @property
    def ready(self) -> bool:
        """The warm-up is over: the model has named centroids and assigns personas."""
        return bool(self.names)

    def standardize(self, x: Mapping[str, float]) -> dict[str, float]:
        """Standardized, clipped values of the known features of ``x``."""
        z = self.scaler.transform_one(bounded(x))
        return {f: clip(v, -self.clip, self.clip) for f, v in z.items()}

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn from one (finished) session's persona features."""
        raw = bounded(x)
        if not raw:
            return
        self.scaler.learn_one(raw)
        self._version = None
        if not self.ready:
            self._buffer.append(raw)
            if len(self._buffer) >= max(self.warmup, self.n_personas):
                self._initialize()
            return
        z = {f: clip(v, -self.clip, self.clip) * WEIGHTS.get(f, 1.0) for f, v in self.scaler.transform_one(raw).items()}
        c = self._nearest(z)
        self.kmeans.halflife = max(1.0 / (self.counts[c] + 1), self.min_rate)
        self.counts[self.kmeans.learn_predict_one(z)] += 1  # River moves the nearest center: c

    def _initialize(self) -> None:
        """Seed centers by k-means++ (+ a few Lloyd steps) on the warm-up buffer (weighted), then name them."""
        Z = np.array([[clip(z.get(f, 0.0), -self.clip, self.clip) for f in FEATURES]
                      for z in map(self.scaler.transform_one, self._buffer)]) * WEIGHT
        rng = np.random.default_rng(self.seed)
        centers = [Z[rng.integers(len(Z))]]
        for _ in range(1, self.n_personas):
            d2 = np.min([((Z - c) ** 2).sum(1) for c in centers], axis=0)
            centers.append(Z[rng.choice(len(Z), p=d2 / d2.sum())] if d2.sum() > 0 else Z[rng.integers(len(Z))])
        C = np.array(centers)
        for _ in range(10):
            label = np.argmin(((Z[:, None, :] - C[None]) ** 2).sum(2), axis=1)
            C = np.array([Z[label == i].mean(0) if (label == i).any() else C[i] for i in range(len(C))])
        self.set_centers(C / WEIGHT)
        self.counts = [int((label == i).sum()) for i in range(len(C))]
        self.names = rule_names(self.centers())
        self._buffer = []

    def _nearest(self, z: Mapping[str, float]) -> int:
        """Index of the centroid nearest to standardized, weighted ``z`` (missing features count as 0)."""
        best, d1 = -1, math.inf
        for i in range(self.n_personas):
            center = self.kmeans.centers[i]
            d = math.sqrt(sum((center[f] - z.get(f, 0.0)) ** 2 for f in FEATURES))
            if d < d1:
                best, d1 = i, d
        return best

    # -- centroids --

    def centers(self) -> np.ndarray:
        """Current centroids in standardized space (σ), rows in cluster order, columns in :data:`FEATURES` order."""
        return self._weighted_centers() / WEIGHT

    def _weighted_centers(self) -> np.ndarray:
        return np.array([[self.kmeans.centers[i][f] for f in FEATURES] for i in range(self.n_personas)])

    def set_centers(self, C: np.ndarray) -> None:
        """Replace the centroids by the rows of ``C`` (standardized, σ, :data:`FEATURES` order)."""
        W = C * WEIGHT
        for i in range(self.n_personas):
            self.kmeans.centers[i].clear()
            self.kmeans.centers[i].update({f: float(W[i, j]) for j, f in enumerate(FEATURES)})

    def raw_centers(self) -> np.ndarray:
        """Current centroids in raw feature units (as :func:`persona_features` gives them)."""
        mean, std = mean_std(moments_of(self.scaler))
        return self.centers() * std + mean

    # -- prediction --

    def predict_one(self, x: Mapping[str, float]) -> Assignment:
        """The persona of one session's features (see :meth:`predict_many`)."""
        return self.predict_many([x])[0]

    def predict_many(self, xs: Sequence[Mapping[str, float]]) -> list[Assignment]:
        """Nearest persona of each session's standardized, clipped, weighted features; confidence 1 - d₁/d₂."""
        if not self.ready:
            return [Assignment(-1, UNASSIGNED, 0.0, self.version)] * len(xs)
        raw = np.array([[x.get(f, math.nan) for f in FEATURES] for x in xs], dtype=float)
        raw = raw.reshape(len(xs), len(FEATURES))
        known = np.isfinite(raw)
        raw = np.clip(np.where(known, raw, 0.0), LOWER, UPPER)
        mean = np.array([self.scaler.means.get(f, 0.0) for f in FEATURES])
        std = np.sqrt(np.array([self.scaler.vars.get(f, 0.0) for f in FEATURES]))
        z = np.where(known & (std > 0), (raw - mean) / np.where(std > 0, std, 1.0), 0.0)
        z = np.clip(z, -self.clip, self.clip) * WEIGHT
        d = np.sqrt(((z[:, None, :] - self._weighted_centers()[None]) ** 2).sum(2))
        best = np.argmin(d, axis=1)
        rows = np.arange(len(xs))
        d1 = d[rows, best]
        d[rows, best] = np.inf
        d2 = d.min(axis=1)
        ok = (d2 > 0) & np.isfinite(d2)
        confidence = np.clip(np.where(ok, 1.0 - d1 / np.where(ok, d2, 1.0), 1.0), 0.0, 1.0)
        version = self.version
        return [Assignment(int(c), self.names[c], float(p), version) for c, p in zip(best, confidence)]

    # -- identity and snapshots --

    def _state(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": {"n_personas": self.n_personas, "min_rate": self.min_rate, "clip": self.clip,
                       "warmup": self.warmup, "seed": self.seed},
            "features": list(FEATURES),
            "generation": self.generation,
            "moments": {f: list(m) for f, m in moments_of(self.scaler).items()},
            "centers": self.centers().tolist() if self.ready else [],
            "counts": list(self.counts),
            "names": list(self.names),
            "base": self.base.to_json(),
            "buffer": self._buffer,
        }

    @property
    def version(self) -> str:
        """``persona-g<generation>-<digest>``; the digest covers config, scaler moments, centroids and names."""
        if self._version is None:
            s = self._state()
            key = orjson.dumps([s["config"], s["moments"], s["centers"], s["names"]], option=orjson.OPT_SORT_KEYS)
            self._version = f"persona-g{self.generation}-{hashlib.sha256(key).hexdigest()[:10]}"
        return self._version

    def to_bytes(self) -> bytes:
        """A JSON snapshot; :meth:`from_bytes` restores a model that assigns and learns identically."""
        return orjson.dumps(self._state(), option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PersonaModel:
        """The model of a :meth:`to_bytes` snapshot; ValueError for another format or feature list."""
        s = orjson.loads(raw)
        if s.get("format") != FORMAT or s.get("features") != list(FEATURES):
            raise ValueError("persona snapshot was written for another format or feature list")
        model = cls(**s["config"])
        model.scaler = scaler_from({f: tuple(m) for f, m in s["moments"].items()})
        model.generation = s["generation"]
        model.counts = list(s["counts"])
        model.names = list(s["names"])
        if s["centers"]:
            model.set_centers(np.array(s["centers"], dtype=float))
        model.base = merge.Base.from_json(s["base"])
        model._buffer = [dict(x) for x in s["buffer"]]
        return model

    def save(self, path: str | Path = ARTIFACT) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path = ARTIFACT) -> PersonaModel:
        return cls.from_bytes(Path(path).read_bytes())

    @classmethod
    def default(cls) -> PersonaModel:
        """The shipped snapshot trained on UCI Online Shoppers sessions (:data:`ARTIFACT`)."""
        return cls.load(ARTIFACT)

    # -- sharing across workers (the algorithm is in models.persona.merge) --

    def learner(self) -> PersonaModel:
        """A copy to learn into; what it learns from here on is what :meth:`absorb` takes from it."""
        return merge.learner(self)

    @property
    def learned(self) -> int:
        """Sessions learned since the base (warm-up sessions included)."""
        return merge.learned(self)

    def rebase(self) -> PersonaModel:
        """Mark the current state as the base that :meth:`absorb` measures this model's learning from."""
        return merge.rebase(self)

    def absorb(self, learners: Sequence[bytes | PersonaModel]) -> PersonaModel:
        """The next shared model: this one plus what each learner learned since its own base (:func:`merge.absorb`)."""
        return merge.absorb(self, learners)
