"""Named, versioned feature sets: what an intent model reads of a visit's :class:`SessionState`.

A model's metadata names its feature set; the worker scores with that set's :attr:`FeatureSet.row`,
and training builds its rows with the same function, so serving and training cannot disagree.

- ``uci-v1``: the UCI Online Shoppers columns (:data:`models.features.FEATURES`), for models
  trained on UCI sessions replayed as events;
- ``site-v1``: every signal the tracker sends (page types, dwell, scroll, clicks, searches, cart,
  device, traffic source, time of day) plus page statistics learned from the site's own visits.

>>> state = SessionState(start_ts=1_700_000_000.0, last_ts=1_700_000_090.0, page_views=3, detail_views=2,
...                      cart_adds=1, cart_items=2, cart_value=59.8, device_class="mobile", os="iOS 17.4")
>>> row = dict(zip(SITE.features, SITE.row(state, {name: {} for name in SITE.categorical})))
>>> row["CartValue"], row["DetailViews"], row["PagesPerMinute"]
(59.8, 2, 2.0)
>>> SITE.context(state)["OS"]
'iOS'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

from models.features import CATEGORICAL, FEATURES, SessionState, Vocabulary, raw_context, session_features


@dataclass(frozen=True)
class FeatureSet:
    """A feature vector of a visit: its column names, which of them are categorical, the function
    computing it from a state and an encoding vocabulary, and a visit's categorical values."""

    name: str
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    row: Callable[[SessionState, Vocabulary], list[float]]
    context: Callable[[SessionState], dict[str, str]]
    native_categorical: bool
    """LightGBM splits the categorical columns as categories (else as ordinal codes, most frequent first)."""

    def categorical_indices(self) -> list[int]:
        return [self.features.index(name) for name in self.categorical]


UCI = FeatureSet("uci-v1", FEATURES, CATEGORICAL, session_features, raw_context, native_categorical=False)

_VERSION = re.compile(r"(\s+v?\d[\w.]*)+$")


def family(name: str) -> str:
    """An OS or browser name without its version: ``"Chrome Mobile 124.0"`` -> ``"Chrome Mobile"``."""
    return _VERSION.sub("", name) or name


SITE_CATEGORICAL = ("DeviceClass", "Screen", "OS", "Browser", "Region", "TrafficSource", "VisitorType",
                    "LandingType")

SITE_FEATURES = (
    "PageViews", "DetailViews", "ListingViews", "CartViews", "CheckoutViews", "AccountViews", "InfoViews",
    "OtherViews", "Events", "Duration", "DwellTotal", "DwellProduct", "DwellPerPage", "DwellPerDetail",
    "Clicks", "ClicksPerPage", "Searches", "ScrollMaxProduct", "ScrollMeanProduct",
    "CartAdds", "CartRemoves", "CartItems", "CartValue",
    "SecondsSinceLastPage", "PagesPerMinute",
    "BounceRates", "ExitRates", "PageValues", "PageValueMax", "PageValueTotal",
    "Hour", "Weekday",
    *SITE_CATEGORICAL,
)
"""The ``site-v1`` columns, in order."""


def site_context(state: SessionState) -> dict[str, str]:
    """The categorical values of a visit before encoding, in :data:`SITE_CATEGORICAL` order."""
    return dict(zip(SITE_CATEGORICAL, (state.device_class, state.screen, family(state.os), family(state.browser),
                                       state.region, state.traffic_source, state.visitor_type, state.landing_type)))


def site_features(state: SessionState, vocabulary: Vocabulary) -> list[float]:
    """The ``site-v1`` vector of a visit, in :data:`SITE_FEATURES` order (NaN for unseen categories)."""
    n = state.page_views
    dwell = state.admin_seconds + state.info_seconds + state.product_seconds + state.other_seconds
    minutes = (state.last_ts - state.start_ts) / 60.0
    context = site_context(state)
    return [
        n, state.detail_views, state.product_views - state.detail_views, state.cart_views, state.checkout_views,
        state.admin_views - state.cart_views - state.checkout_views, state.info_views, state.other_views,
        state.events, state.last_ts - state.start_ts, dwell, state.product_seconds,
        dwell / n if n else 0.0,
        state.product_seconds / state.detail_views if state.detail_views else 0.0,
        state.clicks, state.clicks / n if n else 0.0, state.searches,
        state.product_scroll_max, state.product_scroll_sum / state.detail_views if state.detail_views else 0.0,
        state.cart_adds, state.cart_removes, state.cart_items, state.cart_value,
        state.last_ts - state.last_page_ts if n else math.nan,
        n / minutes if minutes > 0 else math.nan,
        state.bounce_rate_sum / n if n else math.nan,
        state.exit_rate_sum / n if n else math.nan,
        state.page_value_sum / n if n else 0.0,
        state.page_value_max, state.page_value_sum,
        (state.start_ts % 86400) // 3600, (state.start_ts // 86400 + 3) % 7,
        *(float(vocabulary[name].get(context[name], math.nan)) for name in SITE_CATEGORICAL),
    ]


SITE = FeatureSet("site-v1", SITE_FEATURES, SITE_CATEGORICAL, site_features, site_context, native_categorical=True)

FEATURE_SETS = {feature_set.name: feature_set for feature_set in (UCI, SITE)}


def feature_set(name: str) -> FeatureSet:
    """The feature set called ``name``; ``KeyError`` names the known ones."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise KeyError(f"unknown feature set {name!r}; this code computes {sorted(FEATURE_SETS)}") from None
