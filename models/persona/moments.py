"""Scaler moments: per-feature (count, mean, M2) of a River StandardScaler, and their algebra.

Moments of disjoint sets of sessions add exactly (:func:`combine`, Chan et al.'s parallel update);
:func:`subtract` takes a base out of a total, which is how a learner's own sessions are measured.
"""

from __future__ import annotations

import math

import numpy as np
from river import preprocessing

from models.persona.features import FEATURES

Moment = tuple[float, float, float]
"""(count, mean, M2) of one feature, with M2 = count × population variance."""

Moments = dict[str, Moment]
"""feature -> :data:`Moment`."""


def zero() -> Moments:
    """The moments of no session."""
    return {f: (0.0, 0.0, 0.0) for f in FEATURES}


def moments_of(scaler: preprocessing.StandardScaler) -> Moments:
    """The moments a scaler has learned, for every feature in :data:`FEATURES` (zero if unseen)."""
    return {f: (float(scaler.counts.get(f, 0)), float(scaler.means.get(f, 0.0)),
                float(scaler.counts.get(f, 0)) * float(scaler.vars.get(f, 0.0))) for f in FEATURES}


def scaler_from(moments: Moments) -> preprocessing.StandardScaler:
    """A StandardScaler holding ``moments`` (features with no count are left out)."""
    return preprocessing.StandardScaler._from_state(
        counts={f: int(round(m[0])) for f, m in moments.items() if m[0] > 0},
        means={f: m[1] for f, m in moments.items() if m[0] > 0},
        vars={f: m[2] / m[0] for f, m in moments.items() if m[0] > 0})


def combine(a: Moment, b: Moment) -> Moment:
    """The moment of the union of two disjoint sets of values."""
    (na, ma, sa), (nb, mb, sb) = a, b
    n = na + nb
    if n <= 0:
        return 0.0, 0.0, 0.0
    d = mb - ma
    return n, ma + d * nb / n, sa + sb + d * d * na * nb / n


def subtract(total: Moment, base: Moment) -> Moment:
    """The moment of the values in ``total`` that are not in ``base`` (a subset of them); M2 floored at 0."""
    (nt, mt, st), (nb, mb, sb) = total, base
    nd = nt - nb
    if nd <= 0:
        return 0.0, 0.0, 0.0
    md = (nt * mt - nb * mb) / nd
    return nd, md, max(st - sb - (md - mb) ** 2 * nb * nd / nt, 0.0)


def mean_std(moments: Moments) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation vectors in :data:`FEATURES` order (std 0 if unseen)."""
    mean = np.array([moments[f][1] for f in FEATURES])
    std = np.array([math.sqrt(moments[f][2] / moments[f][0]) if moments[f][0] > 0 else 0.0 for f in FEATURES])
    return mean, std
