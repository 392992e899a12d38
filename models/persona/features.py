"""Persona features: bounded, transformed values of a visit, in one fixed order.

:func:`persona_features` turns a visit's :class:`~models.features.SessionState` and its intent score
into :data:`FEATURES`, each within its :data:`BOUNDS`; :func:`bounded` applies the same bounds to
any mapping a model is given.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from models.features import SessionState

FEATURES = ("pages", "dwell", "product_share", "admin_share", "info_share", "bounce", "exit", "value", "intent",
            "cart_adds", "cart_churn", "search", "scroll", "mobile")
"""Persona features, in this order everywhere (centroid vectors, snapshots, tables). The last five read
events a UCI session does not have (cart, search, scroll, device): they are 0 for every UCI session."""

MAX_PAGES = 1000.0
MAX_DWELL_PER_PAGE_S = 3600.0
MAX_PAGE_VALUE = 1000.0
MAX_CART_ADDS = 100.0
DEVICE = {"mobile": 1.0, "tablet": 0.5}
"""``mobile`` feature by device class; any other class (desktop, other, unknown) is 0."""

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
    "cart_adds": (0.0, math.log1p(MAX_CART_ADDS)),
    "cart_churn": (0.0, 1.0),
    "search": (0.0, 1.0),
    "scroll": (0.0, 1.0),
    "mobile": (0.0, 1.0),
}
"""Valid range of each persona feature; models clip raw inputs to it (:func:`bounded`)."""

WEIGHTS: dict[str, float] = {"mobile": 0.5}
"""Weight of a standardized feature in the clustering distance (1 if not listed). The device is one
0/1 feature; standardized at full weight it would put phones and desktops about 2σ apart and split
every behaviour into two device halves; at half weight it separates clusters only where behaviour
differs too."""

LOWER = np.array([BOUNDS[f][0] for f in FEATURES])
"""Lower bounds as a vector in :data:`FEATURES` order."""
UPPER = np.array([BOUNDS[f][1] for f in FEATURES])
"""Upper bounds as a vector in :data:`FEATURES` order."""
WEIGHT = np.array([WEIGHTS.get(f, 1.0) for f in FEATURES])
""":data:`WEIGHTS` as a vector in :data:`FEATURES` order."""
_BOUNDS = [BOUNDS[f] for f in FEATURES]


def finite(value: object, default: float = 0.0) -> float:
    """``value`` as a float, or ``default`` if it is not a finite number."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def clip(v: float, lo: float, hi: float) -> float:
    """``v`` limited to ``[lo, hi]`` (scalar, faster than :func:`numpy.clip`)."""
    return lo if v < lo else hi if v > hi else v


def persona_features(state: SessionState, intent: float) -> dict[str, float]:
    """Bounded, transformed features of a visit; finite for any state (zero pages, NaN, hours of dwell).

    - ``pages``: log1p(page views), views capped at :data:`MAX_PAGES`
    - ``dwell``: log1p(seconds per page view), capped at :data:`MAX_DWELL_PER_PAGE_S`
    - ``product_share`` / ``admin_share`` / ``info_share``: share of page views by UCI page group
    - ``bounce`` / ``exit``: mean bounce and exit rate of the pages viewed (0 with no page view)
    - ``value``: log1p(mean page value), i.e. UCI ``PageValues``, capped at :data:`MAX_PAGE_VALUE`
    - ``intent``: the intent score, clipped to [0, 1] (0 if missing/NaN)
    - ``cart_adds``: log1p(add-to-cart events), capped at :data:`MAX_CART_ADDS`
    - ``cart_churn``: remove-from-cart events per add (a removal with no add in the visit counts 1)
    - ``search``: searches per page view (0 with no page view)
    - ``scroll``: mean deepest scroll on product detail pages, 0 to 1 (0 with none)
    - ``mobile``: 1 on a phone, 0.5 on a tablet, else 0 (:data:`DEVICE`)
    """
    admin_views = max(finite(state.admin_views), 0.0)
    info_views = max(finite(state.info_views), 0.0)
    product_views = max(finite(state.product_views), 0.0)
    viewed = max(finite(state.page_views), 0.0)
    n = min(max(viewed, admin_views + info_views + product_views), MAX_PAGES)
    per = 1.0 / n if n >= 1.0 else 0.0
    seconds = (max(finite(state.admin_seconds), 0.0) + max(finite(state.info_seconds), 0.0)
               + max(finite(state.product_seconds), 0.0))
    per_view = 1.0 / viewed if viewed >= 1.0 else 0.0
    adds = max(finite(state.cart_adds), 0.0)
    details = max(finite(state.detail_views), 0.0)
    x = (
        math.log1p(n),
        math.log1p(min(seconds / max(n, 1.0), MAX_DWELL_PER_PAGE_S)),
        product_views * per,
        admin_views * per,
        info_views * per,
        finite(state.bounce_rate_sum) * per_view,
        finite(state.exit_rate_sum) * per_view,
        math.log1p(min(max(finite(state.page_value_sum) * per_view, 0.0), MAX_PAGE_VALUE)),
        finite(intent),
        math.log1p(min(adds, MAX_CART_ADDS)),
        max(finite(state.cart_removes), 0.0) / max(adds, 1.0),
        finite(state.searches) * per_view,
        finite(state.product_scroll_sum) / (100.0 * details) if details >= 1.0 else 0.0,
        DEVICE.get(state.device_class, 0.0),
    )
    return {f: clip(v, lo, hi) for f, v, (lo, hi) in zip(FEATURES, x, _BOUNDS)}


def bounded(x: Mapping[str, float]) -> dict[str, float]:
    """The known, finite features of ``x`` clipped to :data:`BOUNDS`; missing or non-finite ones are left out."""
    out = {}
    for f in FEATURES:
        v = x.get(f)
        if v is None:
            continue
        v = finite(v, math.nan)
        if math.isfinite(v):
            out[f] = clip(v, *BOUNDS[f])
    return out
