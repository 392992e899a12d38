"""Session personas: online River clustering of finished sessions into named, stable segments.

Pure module (no Kafka). The stream computes :func:`persona_features` from a visit's
:class:`~models.features.SessionState` and its intent score, asks a :class:`PersonaModel` for an
:class:`Assignment`, and teaches the model with finished sessions.

Model: a :class:`river.preprocessing.StandardScaler` feeding a :class:`river.cluster.KMeans`.
Standardized values are clipped to ``±clip`` σ before learning, so one extreme or malformed
session cannot drag a centroid. The KMeans step for a cluster is ``max(1/(n_c+1), min_rate)``
(sequential/MacQueen k-means with a floor that keeps it adapting to drift), applied through
River's ``halflife`` parameter. A cold model buffers ``warmup`` sessions and seeds its centers with
k-means++ on them; :meth:`PersonaModel.default` starts from the shipped UCI-trained snapshot
(``models/artifacts/persona.json``) instead.

Names: a cluster is named once, from its centroid, by :func:`rule_names` (see ``ARCHETYPES``); the
named centroids become *prototypes*. Later, names follow clusters by index as they learn; every
worker's learner is a copy of the shared model, so cluster ``i`` means the same persona everywhere.

Workers: every worker assigns with the same shared model and learns into its own
:meth:`PersonaModel.learner`; :meth:`PersonaModel.absorb` folds the learners' progress into the next
shared model (scaler moments exactly, centroid moves weighted by sessions learned), which every
worker loads (see :mod:`stream.persona_sync`). ``version`` is a digest of everything that decides
an assignment.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import orjson
from river import cluster, preprocessing
from scipy.optimize import linear_sum_assignment

from models.features import SessionState

ARTIFACT = Path(__file__).parent / "artifacts" / "persona.json"
FORMAT = 1

FEATURES = ("pages", "dwell", "product_share", "admin_share", "info_share", "bounce", "exit", "value", "intent")
"""Persona features, in this order everywhere (centroid vectors, prototypes, tables)."""

MAX_PAGES = 1000.0
MAX_DWELL_PER_PAGE_S = 3600.0
MAX_PAGE_VALUE = 1000.0

BOUNDS: dict[str, tuple[float, float]] = {
    "pages": (0.0, math.log1p(MAX_PAGES)),
    "dwell": (0.0, math.log1p(MAX_DWELL_PER_PAGE_S)),
    "product_share": (0.0, 1.0),
    "admin_share": (0.0, 1.0),
    "info_share": (0.0, 1.0),
    "bounce": (0.0, 1.0),
    "exit": (0.0, 1.0),
    "value": (0.0, math.log1p(MAX_PAGE_VALUE)),
    "intent": (0.0, 1.0),
}
"""Valid range of each persona feature; :meth:`PersonaModel.learn_one` clips raw inputs to it."""
_LOWER = np.array([BOUNDS[f][0] for f in FEATURES])
_UPPER = np.array([BOUNDS[f][1] for f in FEATURES])


def _finite(value: object, default: float = 0.0) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def persona_features(state: SessionState, intent: float) -> dict[str, float]:
    """Bounded, transformed features of a visit; finite for any state (zero pages, NaN, hours of dwell).

    - ``pages``: log1p(page views), views capped at :data:`MAX_PAGES`
    - ``dwell``: log1p(seconds per page view), capped at :data:`MAX_DWELL_PER_PAGE_S`
    - ``product_share`` / ``admin_share`` / ``info_share``: share of page views by UCI page group
    - ``bounce`` / ``exit``: mean bounce and exit rate of the pages viewed (0 with no page view)
    - ``value``: log1p(mean page value), i.e. UCI ``PageValues``, capped at :data:`MAX_PAGE_VALUE`
    - ``intent``: the intent score, clipped to [0, 1] (0 if missing/NaN)
    """
    admin_views = max(_finite(state.admin_views), 0.0)
    info_views = max(_finite(state.info_views), 0.0)
    product_views = max(_finite(state.product_views), 0.0)
    viewed = max(_finite(state.page_views), 0.0)
    n = min(max(viewed, admin_views + info_views + product_views), MAX_PAGES)
    per = 1.0 / n if n >= 1.0 else 0.0
    seconds = sum(max(_finite(d), 0.0) for d in (state.admin_seconds, state.info_seconds, state.product_seconds))
    per_view = 1.0 / viewed if viewed >= 1.0 else 0.0
    x = {
        "pages": math.log1p(n),
        "dwell": math.log1p(min(seconds / max(n, 1.0), MAX_DWELL_PER_PAGE_S)),
        "product_share": product_views * per,
        "admin_share": admin_views * per,
        "info_share": info_views * per,
        "bounce": _finite(state.bounce_rate_sum) * per_view,
        "exit": _finite(state.exit_rate_sum) * per_view,
        "value": math.log1p(min(max(_finite(state.page_value_sum) * per_view, 0.0), MAX_PAGE_VALUE)),
        "intent": _finite(intent),
    }
    return {k: _clip(v, *BOUNDS[k]) for k, v in x.items()}


# --- naming -------------------------------------------------------------------------------------

HIGH_INTENT = "High-Intent Buyer"
UNASSIGNED = "Unassigned"

ARCHETYPES: dict[str, dict[str, float]] = {
    "Bouncer": {"bounce": 1.0, "exit": 1.0, "pages": -1.0},
    "Researcher": {"pages": 1.0, "dwell": 1.0, "value": -1.0, "intent": -1.0},
    "Account & Cart Visitor": {"admin_share": 1.0},
    "Info Seeker": {"info_share": 1.0},
    "Window Shopper": {"product_share": 1.0, "pages": -0.5, "value": -1.0, "intent": -1.0, "bounce": -1.0},
    "Skimmer": {"pages": 1.0, "dwell": -1.0},
}
"""Naming rule. The centroid with the highest ``intent + value`` (in σ of the population) is the
:data:`HIGH_INTENT` persona; the others get distinct names from this table by maximising the total
score ``Σ weight × centroid z-value`` over a one-to-one (Hungarian) assignment."""


def rule_names(centers: np.ndarray, archetypes: Mapping[str, Mapping[str, float]] = ARCHETYPES) -> list[str]:
    """Names for standardized centroids (rows in :data:`FEATURES` order) by the rule in :data:`ARCHETYPES`."""
    k = len(centers)
    if k - 1 > len(archetypes):
        raise ValueError(f"{k} clusters but only {len(archetypes) + 1} persona names")
    col = {f: j for j, f in enumerate(FEATURES)}
    buyer = int(np.argmax(centers[:, col["intent"]] + centers[:, col["value"]]))
    names = list(archetypes)
    weights = np.array([[archetypes[n].get(f, 0.0) for f in FEATURES] for n in names])
    rest = [i for i in range(k) if i != buyer]
    score = centers[rest] @ weights.T
    rows, cols = linear_sum_assignment(-score)
    out = [""] * k
    out[buyer] = HIGH_INTENT
    for r, c in zip(rows, cols):
        out[rest[r]] = names[c]
    return out


@dataclass(frozen=True, slots=True)
class Assignment:
    persona_id: int
    name: str
    confidence: float
    """1 - d₁/d₂ for the distances to the nearest and second nearest centroid: 0 on a boundary, 1 on a centroid."""
    version: str


# --- scaler moments -----------------------------------------------------------------------------

Moments = dict[str, tuple[float, float, float]]
"""feature -> (count, mean, M2) with M2 = count × population variance."""


def _moments(scaler: preprocessing.StandardScaler) -> Moments:
    return {f: (float(scaler.counts.get(f, 0)), float(scaler.means.get(f, 0.0)),
                float(scaler.counts.get(f, 0)) * float(scaler.vars.get(f, 0.0))) for f in FEATURES}


def _combine(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float, float]:
    (na, ma, sa), (nb, mb, sb) = a, b
    n = na + nb
    if n <= 0:
        return 0.0, 0.0, 0.0
    d = mb - ma
    return n, ma + d * nb / n, sa + sb + d * d * na * nb / n


def _subtract(total: tuple[float, float, float], base: tuple[float, float, float]) -> tuple[float, float, float]:
    (nt, mt, st), (nb, mb, sb) = total, base
    nd = nt - nb
    if nd <= 0:
        return 0.0, 0.0, 0.0
    md = (nt * mt - nb * mb) / nd
    return nd, md, max(st - sb - (md - mb) ** 2 * nb * nd / nt, 0.0)


def _scaler(moments: Moments) -> preprocessing.StandardScaler:
    return preprocessing.StandardScaler._from_state(
        counts={f: int(round(m[0])) for f, m in moments.items() if m[0] > 0},
        means={f: m[1] for f, m in moments.items() if m[0] > 0},
        vars={f: m[2] / m[0] for f, m in moments.items() if m[0] > 0})


# --- model --------------------------------------------------------------------------------------


class PersonaModel:
    """Online persona clustering: StandardScaler → clip ±``clip`` σ → River KMeans, with named clusters."""

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
        self.prototypes: np.ndarray | None = None
        self.counts = [0] * n_personas
        self.generation = 0
        self._base_moments: Moments = {f: (0.0, 0.0, 0.0) for f in FEATURES}
        self._base_counts = [0] * n_personas
        self._base_version = ""
        self._base_raw: np.ndarray | None = None
        self._buffer: list[dict[str, float]] = []
        self._version: str | None = None

    # -- inputs --

    def _raw(self, x: Mapping[str, float]) -> dict[str, float]:
        """Known, finite features of ``x`` clipped to :data:`BOUNDS`; missing ones are left out."""
        out = {}
        for f in FEATURES:
            v = x.get(f)
            if v is None:
                continue
            v = _finite(v, math.nan)
            if math.isfinite(v):
                out[f] = _clip(v, *BOUNDS[f])
        return out

    def standardize(self, x: Mapping[str, float]) -> dict[str, float]:
        """Standardized, clipped values of the known features of ``x``."""
        z = self.scaler.transform_one(self._raw(x))
        return {f: _clip(v, -self.clip, self.clip) for f, v in z.items()}

    # -- learning --

    @property
    def ready(self) -> bool:
        return bool(self.names)

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn from one (finished) session's persona features."""
        raw = self._raw(x)
        if not raw:
            return
        self.scaler.learn_one(raw)
        self._version = None
        if not self.ready:
            self._buffer.append(raw)
            if len(self._buffer) >= max(self.warmup, self.n_personas):
                self._initialize()
            return
        z = {f: _clip(v, -self.clip, self.clip) for f, v in self.scaler.transform_one(raw).items()}
        c = self._nearest(z)[0]
        self.kmeans.halflife = max(1.0 / (self.counts[c] + 1), self.min_rate)
        self.counts[self.kmeans.learn_predict_one(z)] += 1  # River moves the nearest center: c

    def _initialize(self) -> None:
        """Seed centers by k-means++ (+ a few Lloyd steps) on the warm-up buffer, then name them."""
        Z = np.array([[_clip(z.get(f, 0.0), -self.clip, self.clip) for f in FEATURES]
                      for z in map(self.scaler.transform_one, self._buffer)])
        rng = np.random.default_rng(self.seed)
        centers = [Z[rng.integers(len(Z))]]
        for _ in range(1, self.n_personas):
            d2 = np.min([((Z - c) ** 2).sum(1) for c in centers], axis=0)
            centers.append(Z[rng.choice(len(Z), p=d2 / d2.sum())] if d2.sum() > 0 else Z[rng.integers(len(Z))])
        C = np.array(centers)
        for _ in range(10):
            label = np.argmin(((Z[:, None, :] - C[None]) ** 2).sum(2), axis=1)
            C = np.array([Z[label == i].mean(0) if (label == i).any() else C[i] for i in range(len(C))])
        self._set_centers(C)
        self.counts = [int((label == i).sum()) for i in range(len(C))]
        self.names = rule_names(C)
        self.prototypes = C.copy()
        self._buffer = []

    # -- prediction --

    def centers(self) -> np.ndarray:
        """Current centroids in standardized space, rows in cluster order, columns in :data:`FEATURES` order."""
        return np.array([[self.kmeans.centers[i][f] for f in FEATURES] for i in range(self.n_personas)])

    def _set_centers(self, C: np.ndarray) -> None:
        for i in range(self.n_personas):
            self.kmeans.centers[i].clear()
            self.kmeans.centers[i].update({f: float(C[i, j]) for j, f in enumerate(FEATURES)})

    def _nearest(self, z: Mapping[str, float]) -> tuple[int, float, float]:
        best, d1, d2 = -1, math.inf, math.inf
        for i in range(self.n_personas):
            center = self.kmeans.centers[i]
            d = math.sqrt(sum((center[f] - z.get(f, 0.0)) ** 2 for f in FEATURES))
            if d < d1:
                best, d1, d2 = i, d, d1
            elif d < d2:
                d2 = d
        return best, d1, d2

    def predict_one(self, x: Mapping[str, float]) -> Assignment:
        return self.predict_many([x])[0]

    def predict_many(self, xs: Sequence[Mapping[str, float]]) -> list[Assignment]:
        """Nearest persona of each session's standardized, clipped features; confidence 1 - d₁/d₂."""
        if not self.ready:
            return [Assignment(-1, UNASSIGNED, 0.0, self.version)] * len(xs)
        raw = np.array([[x.get(f, math.nan) for f in FEATURES] for x in xs], dtype=float).reshape(len(xs), len(FEATURES))
        known = np.isfinite(raw)
        raw = np.clip(np.where(known, raw, 0.0), _LOWER, _UPPER)
        mean = np.array([self.scaler.means.get(f, 0.0) for f in FEATURES])
        std = np.sqrt(np.array([self.scaler.vars.get(f, 0.0) for f in FEATURES]))
        z = np.where(known & (std > 0), (raw - mean) / np.where(std > 0, std, 1.0), 0.0)
        z = np.clip(z, -self.clip, self.clip)
        d = np.sqrt(((z[:, None, :] - self.centers()[None]) ** 2).sum(2))
        best = np.argmin(d, axis=1)
        rows = np.arange(len(xs))
        d1 = d[rows, best]
        d[rows, best] = np.inf
        d2 = d.min(axis=1)
        ok = (d2 > 0) & np.isfinite(d2)
        confidence = np.clip(np.where(ok, 1.0 - d1 / np.where(ok, d2, 1.0), 1.0), 0.0, 1.0)
        version = self.version
        return [Assignment(int(c), self.names[c], float(p), version) for c, p in zip(best, confidence)]

    def profile(self) -> list[dict[str, float | str | int]]:
        """Per persona: name, sessions learned and centroid in raw feature units."""
        out = []
        for i, row in enumerate(self.raw_centers()):
            out.append({"persona_id": i, "name": self.names[i] if self.ready else UNASSIGNED,
                        "count": self.counts[i], **{f: float(v) for f, v in zip(FEATURES, row)}})
        return out

    def raw_centers(self) -> np.ndarray:
        mean, std = self._mean_std(_moments(self.scaler))
        return self.centers() * std + mean

    @staticmethod
    def _mean_std(moments: Moments) -> tuple[np.ndarray, np.ndarray]:
        mean = np.array([moments[f][1] for f in FEATURES])
        std = np.array([math.sqrt(moments[f][2] / moments[f][0]) if moments[f][0] > 0 else 0.0 for f in FEATURES])
        return mean, std

    # -- identity and snapshots --

    def _state(self) -> dict:
        return {
            "format": FORMAT,
            "config": {"n_personas": self.n_personas, "min_rate": self.min_rate, "clip": self.clip,
                       "warmup": self.warmup, "seed": self.seed},
            "features": list(FEATURES),
            "generation": self.generation,
            "moments": {f: list(m) for f, m in _moments(self.scaler).items()},
            "centers": self.centers().tolist() if self.ready else [],
            "counts": list(self.counts),
            "names": list(self.names),
            "prototypes": self.prototypes.tolist() if self.prototypes is not None else [],
            "base": {"version": self._base_version, "counts": list(self._base_counts),
                     "centers": self._base_raw.tolist() if self._base_raw is not None else [],
                     "moments": {f: list(m) for f, m in self._base_moments.items()}},
            "buffer": self._buffer,
        }

    @property
    def version(self) -> str:
        """``persona-g<generation>-<digest>``; the digest covers scaler, centroids and names."""
        if self._version is None:
            s = self._state()
            key = orjson.dumps([s["config"], s["moments"], s["centers"], s["names"]], option=orjson.OPT_SORT_KEYS)
            self._version = f"persona-g{self.generation}-{hashlib.sha256(key).hexdigest()[:10]}"
        return self._version

    def to_bytes(self) -> bytes:
        """A JSON snapshot; :meth:`from_bytes` restores a model that assigns and learns identically."""
        return orjson.dumps(self._state(), option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "PersonaModel":
        s = orjson.loads(raw)
        if s.get("format") != FORMAT or s.get("features") != list(FEATURES):
            raise ValueError("persona snapshot was written for another format or feature list")
        model = cls(**s["config"])
        model.scaler = _scaler({f: tuple(m) for f, m in s["moments"].items()})
        model.generation = s["generation"]
        model.counts = list(s["counts"])
        model.names = list(s["names"])
        if s["centers"]:
            model._set_centers(np.array(s["centers"], dtype=float))
        model.prototypes = np.array(s["prototypes"], dtype=float) if s["prototypes"] else None
        model._base_version = s["base"]["version"]
        model._base_counts = list(s["base"]["counts"])
        model._base_moments = {f: tuple(m) for f, m in s["base"]["moments"].items()}
        base_raw = s["base"].get("centers")
        model._base_raw = np.array(base_raw, dtype=float) if base_raw else None
        model._buffer = [dict(x) for x in s["buffer"]]
        return model

    def save(self, path: str | Path = ARTIFACT) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path = ARTIFACT) -> "PersonaModel":
        return cls.from_bytes(Path(path).read_bytes())

    @classmethod
    def default(cls) -> "PersonaModel":
        """The shipped snapshot trained on UCI Online Shoppers sessions (``models/artifacts/persona.json``)."""
        return cls.load(ARTIFACT)

    def rebase(self) -> "PersonaModel":
        """Mark the current state as the base that :meth:`absorb` measures this model's learning from."""
        self._base_version = self.version
        self._base_counts = list(self.counts)
        self._base_moments = _moments(self.scaler)
        self._base_raw = self.raw_centers() if self.ready else None
        return self

    # -- sharing across workers --

    def learner(self) -> "PersonaModel":
        """A copy to learn into; what it learns from here on is what :meth:`absorb` takes from it."""
        return PersonaModel.from_bytes(self.to_bytes()).rebase()

    @property
    def learned(self) -> int:
        """Sessions learned since the base (warm-up sessions included)."""
        now = _moments(self.scaler)
        return int(max(now[f][0] - self._base_moments[f][0] for f in FEATURES))

    def absorb(self, learners: Sequence[bytes | "PersonaModel"]) -> "PersonaModel":
        """The next shared model: this one plus what each learner learned since its own base.

        Scaler moments since each learner's base are added exactly. Each centroid moves (in raw
        units) by the learners' displacements since their bases, averaged with weights = sessions
        each learned into that cluster. Cluster ids, names and prototypes are kept: learners are
        copies of a shared model, so cluster ``i`` is the same persona on every worker. A learner
        based on an older shared model still counts: its displacement moves the current centroids.
        The order of ``learners`` does not matter. The result has generation + 1 and is its own base.
        """
        if not self.ready:
            raise ValueError("the shared persona model has not finished its warm-up")
        models = sorted((m if isinstance(m, PersonaModel) else PersonaModel.from_bytes(m) for m in learners),
                        key=PersonaModel.to_bytes)
        k = self.n_personas
        moments = _moments(self.scaler)
        shift = np.zeros((k, len(FEATURES)))
        weight = np.zeros(k)
        for m in models:
            if m.n_personas != k:
                raise ValueError(f"a learner has {m.n_personas} personas, the shared model {k}")
            now = _moments(m.scaler)
            moments = {f: _combine(moments[f], _subtract(now[f], m._base_moments[f])) for f in FEATURES}
            if m.ready and m._base_raw is not None:
                learned = np.maximum(np.array(m.counts, dtype=float) - np.array(m._base_counts, dtype=float), 0.0)
                shift += learned[:, None] * (m.raw_centers() - m._base_raw)
                weight += learned
        raw = self.raw_centers() + shift / np.maximum(weight, 1.0)[:, None]
        mean, std = self._mean_std(moments)
        C = np.where(std > 0, (raw - mean) / np.where(std > 0, std, 1.0), 0.0)

        out = PersonaModel(k, min_rate=self.min_rate, clip=self.clip, warmup=self.warmup, seed=self.seed)
        out.scaler = _scaler(moments)
        out._set_centers(C)
        out.counts = [int(c + w) for c, w in zip(self.counts, weight)]
        out.names = list(self.names)
        out.prototypes = None if self.prototypes is None else self.prototypes.copy()
        out.generation = self.generation + 1
        return out.rebase()


def assign(model: PersonaModel, state: SessionState, intent: float) -> Assignment:
    """Convenience: the persona of a visit in its current state."""
    return model.predict_one(persona_features(state, intent))


# --- actions ------------------------------------------------------------------------------------

BANDS = ("low", "medium", "high")

DEFAULT_ACTIONS: dict[tuple[str, str], str] = {
    (HIGH_INTENT, "high"): "show reviews and delivery date; keep checkout one click away; no discount",
    (HIGH_INTENT, "medium"): "show reviews, stock level and free-shipping threshold",
    (HIGH_INTENT, "low"): "remind of items viewed; offer to save the cart",
    ("Researcher", "high"): "show comparison table and reviews next to add-to-cart",
    ("Researcher", "medium"): "offer a side-by-side comparison of viewed products",
    ("Researcher", "low"): "offer to email the products viewed; suggest guides",
    ("Window Shopper", "*"): "show bestsellers and new arrivals in the category",
    ("Window Shopper", "high"): "highlight the viewed product with social proof",
    ("Bouncer", "*"): "simplify the landing page: one clear call to action, fast mobile layout",
    ("Account & Cart Visitor", "high"): "streamline checkout: saved address and payment",
    ("Account & Cart Visitor", "*"): "time-limited discount code on the cart",
    ("Info Seeker", "*"): "surface shipping, returns and FAQ answers next to products",
    ("Skimmer", "*"): "show fewer, larger product cards and quick filters",
    ("*", "high"): "show reviews and a clear checkout button",
    ("*", "medium"): "show related products",
    ("*", "low"): "no intervention",
}
"""(persona name or ``*``, intent band or ``*``) -> recommended action."""


def recommend(persona: str, band: str, mapping: Mapping[tuple[str, str], str] = DEFAULT_ACTIONS) -> str:
    """The action for a persona in an intent band: exact match, then (persona, *), (*, band), (*, *)."""
    for key in ((persona, band), (persona, "*"), ("*", band), ("*", "*")):
        if key in mapping:
            return mapping[key]
    return "no intervention"


def learn_many(model: PersonaModel, rows: Iterable[Mapping[str, float]]) -> PersonaModel:
    for x in rows:
        model.learn_one(x)
    return model
