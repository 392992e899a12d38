"""Beta-Bernoulli Thompson sampling over the arms of each context, with exact propensities and
counts that add up across workers.

Every (context, arm) has a Beta(``prior`` + (successes, failures)) posterior of its conversion rate.
A decision draws once from each arm's posterior and picks the largest draw (:meth:`BetaBandit.predict_one`);
a draw is the posterior's quantile of a uniform number the caller gives (inverse-CDF sampling), so a
decision replays exactly from its uniforms.
The probability of picking arm *i*, its **propensity** (logged for off-policy evaluation), is

    P(i) = ∫ f_i(x) ∏_{j≠i} F_j(x) dx = ∫₀¹ ∏_{j≠i} F_j(F_i⁻¹(u)) du

(f, F: density and CDF of a posterior), computed by the midpoint rule on :data:`GRID` quantiles of
arm *i* (:meth:`BetaBandit.propensities`): deterministic, accurate to ~1e-4 whatever the counts, as
the grid follows each posterior however narrow it gets. Counts are plain sums, so workers learn
deltas (learners) and the shared model :meth:`~BetaBandit.absorb` s them exactly; a :class:`Handover`
carries its source and sequence number, so one read twice is absorbed once.

A closed form, not :class:`river.bandit.ThompsonSampling`: River's policy draws from one RNG it owns
(a decision could not be replayed from its seed), has no contexts, propensities or merging.

>>> import numpy as np
>>> bandit = BetaBandit()
>>> context = ("High-Intent Buyer", "high")
>>> for _ in range(30):
...     bandit.learn_one(context, "reviews", True)
...     bandit.learn_one(context, "discount", False)
>>> bandit.predict_one(context, ["reviews", "discount"], [0.5, 0.5])
'reviews'
>>> bandit.predict_one(context, ["reviews", "discount"], [1e-30, 1 - 1e-7])  # improbable draws of both
'discount'
>>> [round(p, 4) for p in bandit.propensities(context, ["reviews", "discount"])]
[1.0, 0.0]
>>> [round(p, 3) for p in BetaBandit().propensities(context, ["a", "b", "c"])]
[0.333, 0.333, 0.333]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import orjson
from scipy import special

GRID = 512
"""Quantiles per arm in the propensity integral."""
SOURCES_KEPT = 1000
"""Hand-over sources (worker runs) whose last sequence number the shared model remembers."""
FORMAT = 1

Context = tuple[str, str]
"""(persona, intent band)."""


class BetaBandit:
    """Beta posteriors of every (context, arm); ``prior`` = (α₀, β₀) pseudo-counts of every arm.

    Outcomes are also kept by ``policy`` (who decided: ``bandit`` or ``holdout``); an arm's posterior
    counts them all.
    """

    def __init__(self, prior: tuple[float, float] = (1.0, 1.0)) -> None:
        self.prior = (float(prior[0]), float(prior[1]))
        self.counts: dict[tuple[str, str, str, str], list[int]] = {}
        """(persona, band, arm, policy) -> [successes, failures]."""
        self.generation = 0
        """How many :meth:`absorb` steps led to this model."""
        self.absorbed: dict[str, int] = {}
        """source -> sequence number of its newest hand-over absorbed."""
        self._version: str | None = None
        self._propensities: dict[tuple[Context, tuple[str, ...]], list[float]] = {}
        self._posterior_cache: dict[tuple[Context, tuple[str, ...]], tuple[np.ndarray, np.ndarray]] = {}

    # -- learning --

    def learn_one(self, context: Context, arm: str, reward: bool, policy: str = "bandit") -> None:
        """One decision's outcome: 1 (a purchase followed) or 0."""
        counts = self.counts.setdefault((*context, arm, policy), [0, 0])
        counts[0 if reward else 1] += 1
        self._version = None
        self._propensities.clear()
        self._posterior_cache.clear()

    @property
    def learned(self) -> int:
        """Outcomes counted."""
        return sum(s + f for s, f in self.counts.values())

    # -- posteriors and decisions --

    def posterior(self, context: Context, arm: str) -> tuple[float, float]:
        """(α, β) of an arm: the prior plus its successes and failures under every policy."""
        a, b = self.prior
        for (persona, band, name, _), (s, f) in self.counts.items():
            if (persona, band, name) == (*context, arm):
                a, b = a + s, b + f
        return a, b

    def _posteriors(self, context: Context, arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        key = (context, tuple(arms))
        if key not in self._posterior_cache:
            ab = np.array([self.posterior(context, arm) for arm in arms])
            self._posterior_cache[key] = ab[:, 0], ab[:, 1]
        return self._posterior_cache[key]

    def predict_one(self, context: Context, arms: Sequence[str], uniforms: Sequence[float]) -> str:
        """The arm with the largest draw from its posterior (Thompson sampling): arm *i* draws its
        posterior's ``uniforms[i]`` quantile, ``uniforms`` being independent and uniform in (0, 1);
        ties go to the first."""
        if len(arms) == 1:
            return arms[0]
        a, b = self._posteriors(context, arms)
        return arms[int(np.argmax(special.betaincinv(a, b, uniforms)))]

    def propensities(self, context: Context, arms: Sequence[str]) -> list[float]:
        """P(:meth:`predict_one` picks each arm) under the current posteriors (see the module docstring)."""
        key = (context, tuple(arms))
        if key not in self._propensities:
            self._propensities[key] = _win_probabilities(*self._posteriors(context, arms))
        return self._propensities[key]

    # -- sharing --

    def absorb(self, handovers: Sequence[Handover]) -> BetaBandit:
        """The next shared model: this one plus the counts of every hand-over not absorbed before."""
        out = BetaBandit.from_bytes(self.to_bytes())
        for handover in sorted(handovers, key=lambda h: (h.source, h.seq)):
            if handover.seq <= out.absorbed.get(handover.source, -1):
                continue
            for key, (s, f) in handover.counts.counts.items():
                counts = out.counts.setdefault(key, [0, 0])
                counts[0] += s
                counts[1] += f
            out.absorbed.pop(handover.source, None)
            out.absorbed[handover.source] = handover.seq
        while len(out.absorbed) > SOURCES_KEPT:
            del out.absorbed[next(iter(out.absorbed))]
        out.generation = self.generation + 1
        return out

    @property
    def version(self) -> str:
        """``bandit-g<generation>-<digest of prior and counts>``."""
        if self._version is None:
            digest = hashlib.sha256(orjson.dumps([self.prior, self._rows()])).hexdigest()[:10]
            self._version = f"bandit-g{self.generation}-{digest}"
        return self._version

    def _rows(self) -> list[list]:
        return [[*key, s, f] for key, (s, f) in sorted(self.counts.items())]

    def to_bytes(self) -> bytes:
        return orjson.dumps({"format": FORMAT, "prior": list(self.prior), "generation": self.generation,
                             "counts": self._rows(), "absorbed": self.absorbed})

    @classmethod
    def from_bytes(cls, raw: bytes) -> BetaBandit:
        """The model of a :meth:`to_bytes` snapshot; ValueError if it is not one."""
        try:
            s = orjson.loads(raw)
            if s.get("format") != FORMAT:
                raise ValueError("bandit snapshot was written in another format")
            out = cls(tuple(s["prior"]))
            out.generation = int(s["generation"])
            out.counts = {(p, b, arm, policy): [int(n), int(m)] for p, b, arm, policy, n, m in s["counts"]}
            out.absorbed = {str(k): int(v) for k, v in s["absorbed"].items()}
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a bandit snapshot: {exc!r}") from exc
        return out


@dataclass(frozen=True)
class Handover:
    """What one worker learned since its previous hand-over: ``seq`` counts up per ``source``."""

    source: str
    seq: int
    counts: BetaBandit

    def to_bytes(self) -> bytes:
        return orjson.dumps({"source": self.source, "seq": self.seq, "counts": self.counts._rows()})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Handover:
        try:
            s = orjson.loads(raw)
            counts = BetaBandit()
            counts.counts = {(p, b, arm, policy): [int(n), int(m)] for p, b, arm, policy, n, m in s["counts"]}
            return cls(str(s["source"]), int(s["seq"]), counts)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a bandit hand-over: {exc!r}") from exc


def _win_probabilities(a: np.ndarray, b: np.ndarray) -> list[float]:
    """P(draw i is the largest) for independent Beta(a_i, b_i), by the midpoint rule in quantile space."""
    if len(a) == 1:
        return [1.0]
    u = (np.arange(GRID) + 0.5) / GRID
    x = special.betaincinv(a[:, None], b[:, None], u[None, :])  # quantiles of each arm
    cdf = special.betainc(a[None, :, None], b[None, :, None], x[:, None, :])  # [i, j, k] = F_j(x_ik)
    k = len(a)
    cdf[np.arange(k), np.arange(k), :] = 1.0
    p = cdf.prod(axis=1).mean(axis=1)
    return [float(v) for v in p / p.sum()]
