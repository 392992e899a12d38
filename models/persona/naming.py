"""Persona names: a fixed rule that names standardized centroids once, when a model warms up."""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment

from models.persona.features import FEATURES

HIGH_INTENT = "High-Intent Buyer"
UNASSIGNED = "Unassigned"
"""The name of every assignment by a model that has not finished its warm-up."""
BARRED = 1e6
"""Score penalty of a name a centroid does not qualify for (the rule always has enough other names)."""

ARCHETYPES: dict[str, dict[str, float]] = {
    "Bouncer": {"bounce": 1.0, "exit": 1.0, "pages": -1.0},
    "Researcher": {"pages": 1.0, "dwell": 1.0, "value": -1.0, "intent": -1.0},
    "Account & Cart Visitor": {"admin_share": 1.0},
    "Info Seeker": {"info_share": 1.0},
    "Window Shopper": {"product_share": 1.0, "pages": -0.5, "value": -1.0, "intent": -1.0, "bounce": -1.0},
    "Skimmer": {"pages": 1.0, "dwell": -1.0},
    "Deal Seeker": {"search": 1.0, "cart_churn": 1.0, "cart_adds": 0.5, "pages": 0.5, "value": -1.0},
    "Mobile Browser": {"mobile": 1.0, "pages": -0.5, "intent": -1.0},
}
"""Naming rule. The centroid with the highest ``intent + value`` (in σ of the population) is the
:data:`HIGH_INTENT` persona; the others get distinct names from this table by maximising the total
score ``Σ weight × centroid z-value`` over a one-to-one (Hungarian) assignment, among the names a
centroid qualifies for (:data:`REQUIRES`)."""

REQUIRES: dict[str, dict[str, float]] = {
    "Deal Seeker": {"search": 0.5, "cart_churn": 0.5},
    "Mobile Browser": {"mobile": 0.5},
}
"""Names only a centroid showing the behaviour can get: its z-value in at least one of these features
reaches the given σ. Features a site's data do not have (constant, z = 0) never qualify, so UCI data
get none of these names."""


def rule_names(centers: np.ndarray, archetypes: Mapping[str, Mapping[str, float]] = ARCHETYPES,
               requires: Mapping[str, Mapping[str, float]] = REQUIRES) -> list[str]:
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
    for c, name in enumerate(names):
        if name in requires:
            shown = np.any([centers[rest, col[f]] >= z for f, z in requires[name].items()], axis=0)
            score[~shown, c] = -BARRED
    rows, cols = linear_sum_assignment(-score)
    out = [""] * k
    out[buyer] = HIGH_INTENT
    for r, c in zip(rows, cols):
        out[rest[r]] = names[c]
    return out
