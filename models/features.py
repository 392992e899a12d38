"""Session state and session features: the one feature function shared by training and serving.

A session's state is folded event by event (:func:`fold`); :func:`session_features` turns a state
into the model's feature vector. Training replays UCI rows as events through the same two
functions, so a feature the stream cannot compute does not exist.
"""

from __future__ import annotations

import math
from base64 import b64decode, b64encode
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from functools import lru_cache
from hashlib import blake2b
from operator import attrgetter
from typing import Callable, Mapping, Sequence

import orjson

from models.calendar import is_weekend, special_day
from schemas.events import Event, PageType

# page type -> UCI page group counted by the session features
ADMINISTRATIVE = frozenset({PageType.account, PageType.cart, PageType.checkout})
INFORMATIONAL = frozenset({PageType.info})
PRODUCT_RELATED = frozenset({PageType.product, PageType.category, PageType.search})

PageLookup = Callable[[str], tuple[float, float, float]]
"""page id -> (bounce rate, exit rate, page value)."""

DEDUP_IDS = 1024
DIGEST_BYTES = 7
"""Event ids a session remembers for de-duplication: an exact re-send is dropped when its original is
among the session's last ``DEDUP_IDS`` events, also after its visit ended (Kafka re-deliveries are
caught by offset regardless)."""


@dataclass(slots=True)
class SessionState:
    """Everything kept per visit; small, flat and serializable to a few hundred bytes."""

    visit: int = 0
    start_ts: float = 0.0
    last_ts: float = 0.0
    events: int = 0
    admin_views: int = 0
    admin_seconds: float = 0.0
    info_views: int = 0
    info_seconds: float = 0.0
    product_views: int = 0
    product_seconds: float = 0.0
    page_views: int = 0
    bounce_rate_sum: float = 0.0
    exit_rate_sum: float = 0.0
    page_value_sum: float = 0.0
    os: str = ""
    browser: str = ""
    region: str = ""
    traffic_source: str = ""
    visitor_type: str = ""
    exit_page: str = ""
    bot: bool = False
    """A known crawler's visit: scored and published, never learned from nor counted in page statistics."""
    intent: float = 0.0
    """The intent score of the visit as last published."""
    closed: bool = False
    """The visit ended (inactivity gap) and was learned from; the next event starts a new visit."""
    partition: int = -1
    offset: int = -1
    """Kafka position of the newest record folded into this session: records at or before it are replays."""
    explained: float = -1.0
    """The intent score ``top`` explains (-1: not explained yet)."""
    top: list[list] = field(default_factory=list)
    """[feature, log-odds contribution] of the features that contributed most to ``explained``."""
    recent_ids: bytes = b""
    """7-byte digests of the event ids of the session's last :data:`DEDUP_IDS` events, concatenated
    (stored as base64: about 9 bytes an event)."""
    decision: list = field(default_factory=list)
    """The visit's current action decision, sticky while its persona and band stay:
    [number in the visit, persona, band, action_id, policy, propensity] (see :mod:`models.bandit`)."""
    unrewarded: list[list] = field(default_factory=list)
    """[persona, band, action_id, policy] of the visit's decisions not rewarded yet: 1 at its next
    purchase, 0 when it ends."""
    # --- what the site feature set reads besides the UCI counters (every event type the tracker sends)
    device_class: str = ""
    screen: str = ""
    landing_type: str = ""
    """Page type of the visit's first page view."""
    detail_views: int = 0
    """Page views of product detail pages (``product`` only; :attr:`product_views` also counts listings)."""
    cart_views: int = 0
    checkout_views: int = 0
    other_views: int = 0
    """Page views of home and other pages (no UCI group)."""
    other_seconds: float = 0.0
    page_value_max: float = 0.0
    last_page_ts: float = 0.0
    clicks: int = 0
    searches: int = 0
    scroll_page: str = ""
    """The page the newest scroll depth belongs to, and that depth (the tracker reports a page's maximum so far)."""
    scroll_depth: float = 0.0
    product_scroll_sum: float = 0.0
    """Sum over product pages of the deepest scroll reached on each (divided by detail views: mean depth)."""
    product_scroll_max: float = 0.0
    cart_adds: int = 0
    cart_removes: int = 0
    cart_items: int = 0
    cart_value: float = 0.0
    """Price times quantity of the items in the cart (removals take the cart's mean item price off)."""
    purchases: int = 0
    revenue: float = 0.0

    def to_bytes(self) -> bytes:
        """The field values as a JSON array, without the trailing ones that hold their defaults (a visit
        that never searched, scrolled or carted stores none of those fields)."""
        values = list(_state_values(self))
        values[_RECENT_IDS] = b64encode(self.recent_ids).decode()
        end = len(values)
        while end > _RECENT_IDS + 1 and values[end - 1] == _DEFAULTS[end - 1]:
            end -= 1
        # a right-sized copy: orjson's own result keeps its larger output buffer resident (~4 KB per
        # blob in a table of 1M sessions, against ~0.5 KB copied; see BENCHMARKS.md)
        return bytes(memoryview(orjson.dumps(values[:end])))

    @classmethod
    def from_bytes(cls, raw: bytes) -> "SessionState":
        values = orjson.loads(raw)
        values[_RECENT_IDS] = b64decode(values[_RECENT_IDS])
        return cls(*values)


_state_values = attrgetter(*(f.name for f in fields(SessionState)))
_RECENT_IDS = [f.name for f in fields(SessionState)].index("recent_ids")
_DEFAULTS = list(_state_values(SessionState()))


def _epoch(ts: datetime) -> float:
    return ts.timestamp()


def start_visit(state: SessionState | None, event: Event) -> SessionState:
    """A fresh visit whose context (device, source, visitor type) comes from its first event; it keeps
    the session's recent event ids, so a re-send of an earlier visit's event is still a duplicate."""
    return SessionState(
        visit=0 if state is None else state.visit + 1,
        start_ts=_epoch(event.ts),
        last_ts=_epoch(event.ts),
        os=event.device.os,
        browser=event.device.browser,
        region=event.region,
        traffic_source=event.traffic_source,
        visitor_type=event.visitor_type.value,
        bot=event.bot,
        recent_ids=b"" if state is None else state.recent_ids,
        device_class=event.device.device_class.value,
        screen=event.device.screen,
    )


def fold(state: SessionState, event: Event, pages: PageLookup) -> None:
    """Apply one event of this visit to ``state`` in place."""
    state.events += 1
    state.bot = state.bot or event.bot
    state.last_ts = max(state.last_ts, _epoch(event.ts))
    kind = event.type
    page_type = event.page.type
    if kind == "page_view":
        _view(state, event, page_type, pages)
    elif kind == "dwell":
        if page_type in PRODUCT_RELATED:
            state.product_seconds += event.seconds
        elif page_type in ADMINISTRATIVE:
            state.admin_seconds += event.seconds
        elif page_type in INFORMATIONAL:
            state.info_seconds += event.seconds
        else:
            state.other_seconds += event.seconds
    elif kind == "scroll":
        _scroll(state, event.page.id, page_type, event.depth_pct)
    elif kind == "click":
        state.clicks += 1
    elif kind == "search":
        state.searches += 1
    elif kind == "add_to_cart":
        state.cart_adds += 1
        state.cart_items += event.quantity
        state.cart_value += (event.price or 0.0) * event.quantity
    elif kind == "remove_from_cart":
        state.cart_removes += 1
        removed = min(event.quantity, state.cart_items)
        if removed:
            state.cart_value -= state.cart_value * removed / state.cart_items
            state.cart_items -= removed
    elif kind == "purchase":
        state.purchases += 1
        state.revenue += event.value if event.value is not None else state.cart_value
        state.cart_items, state.cart_value = 0, 0.0


def _view(state: SessionState, event: Event, page_type: PageType, pages: PageLookup) -> None:
    if page_type in PRODUCT_RELATED:
        state.product_views += 1
        state.detail_views += page_type is PageType.product
    elif page_type in ADMINISTRATIVE:
        state.admin_views += 1
        state.cart_views += page_type is PageType.cart
        state.checkout_views += page_type is PageType.checkout
    elif page_type in INFORMATIONAL:
        state.info_views += 1
    else:
        state.other_views += 1
    bounce, exit_, value = pages(event.page.id)
    if not state.page_views:
        state.landing_type = page_type.value
    state.page_views += 1
    state.bounce_rate_sum += bounce
    state.exit_rate_sum += exit_
    state.page_value_sum += value
    state.page_value_max = max(state.page_value_max, value)
    state.exit_page = event.page.id
    state.last_page_ts = max(state.last_page_ts, _epoch(event.ts))


def _scroll(state: SessionState, page_id: str, page_type: PageType, depth: float) -> None:
    """A page's deepest scroll so far: the increase over the depth known for that page counts."""
    if page_id != state.scroll_page:
        state.scroll_page, state.scroll_depth = page_id, 0.0
    gained = depth - state.scroll_depth
    if gained <= 0:
        return
    state.scroll_depth = depth
    if page_type is PageType.product:
        state.product_scroll_sum += gained
        state.product_scroll_max = max(state.product_scroll_max, depth)


def is_duplicate(state: SessionState, event_id: str) -> bool:
    """True if ``event_id`` was among this session's last :data:`DEDUP_IDS` events; remembers it otherwise."""
    digest = blake2b(event_id.encode(), digest_size=DIGEST_BYTES).digest()
    seen = state.recent_ids
    at = seen.find(digest)
    while at >= 0:
        if at % DIGEST_BYTES == 0:
            return True
        at = seen.find(digest, at + 1)  # matched across two digests: look further
    state.recent_ids = (seen + digest)[-DEDUP_IDS * DIGEST_BYTES:]
    return False


# --- features -----------------------------------------------------------------------------------

CATEGORICAL = ("Month", "OperatingSystems", "Browser", "Region", "TrafficType", "VisitorType")
"""Categorical features, encoded with the vocabulary stored in the model metadata."""

FEATURES = (
    "Administrative", "Administrative_Duration",
    "Informational", "Informational_Duration",
    "ProductRelated", "ProductRelated_Duration",
    "BounceRates", "ExitRates", "PageValues", "SpecialDay",
    "Month", "OperatingSystems", "Browser", "Region", "TrafficType", "VisitorType", "Weekend",
    "TotalPages", "TotalDuration", "ProductDurationPerPage",
    # derived, from SessionState fields only (the stream computes them on every event)
    "PageValueTotal", "ProductShare", "DurationPerPage",
    "AdministrativeDurationPerPage", "InformationalDurationPerPage", "ExitMinusBounce",
)

Vocabulary = Mapping[str, Mapping[str, int]]


@lru_cache(maxsize=4096)
def _calendar(day: int) -> tuple[str, float, float]:
    """(month, special-day closeness, weekend) of a UTC day, counted in days since the epoch."""
    start = date(1970, 1, 1) + timedelta(days=day)
    return str(start.month), special_day(start), float(is_weekend(start))


def _start_day(state: SessionState) -> tuple[str, float, float]:
    return _calendar(int(state.start_ts // 86400))


def _context(state: SessionState, month: str) -> tuple[str, ...]:
    """The categorical values of a visit before encoding, in :data:`CATEGORICAL` order."""
    return month, state.os, state.browser, state.region, state.traffic_source, state.visitor_type


def raw_context(state: SessionState) -> dict[str, str]:
    """The categorical values of a visit before encoding."""
    return dict(zip(CATEGORICAL, _context(state, _start_day(state)[0])))


def session_features(state: SessionState, vocabulary: Vocabulary) -> list[float]:
    """The feature vector of a visit, in :data:`FEATURES` order (NaN for unknown categories)."""
    month, special, weekend = _start_day(state)
    n = state.page_views
    codes = [float(vocabulary[name].get(value, math.nan)) for name, value in zip(CATEGORICAL, _context(state, month))]
    total_pages = state.admin_views + state.info_views + state.product_views
    total_duration = state.admin_seconds + state.info_seconds + state.product_seconds
    return [
        state.admin_views, state.admin_seconds,
        state.info_views, state.info_seconds,
        state.product_views, state.product_seconds,
        state.bounce_rate_sum / n if n else math.nan,
        state.exit_rate_sum / n if n else math.nan,
        state.page_value_sum / n if n else 0.0,
        special,
        *codes,
        weekend,
        total_pages, total_duration,
        state.product_seconds / state.product_views if state.product_views else 0.0,
        state.page_value_sum,
        state.product_views / total_pages if total_pages else math.nan,
        total_duration / total_pages if total_pages else 0.0,
        state.admin_seconds / state.admin_views if state.admin_views else 0.0,
        state.info_seconds / state.info_views if state.info_views else 0.0,
        (state.exit_rate_sum - state.bounce_rate_sum) / n if n else math.nan,
    ]


def build_vocabulary(contexts: Sequence[Mapping[str, str]], names: Sequence[str] = CATEGORICAL,
                     min_count: int = 1) -> dict[str, dict[str, int]]:
    """Codes for every categorical value seen in training at least ``min_count`` times, most frequent first."""
    vocabulary: dict[str, dict[str, int]] = {}
    for name in names:
        counts: dict[str, int] = {}
        for context in contexts:
            counts[context[name]] = counts.get(context[name], 0) + 1
        ordered = sorted((v for v in counts if counts[v] >= min_count), key=lambda value: (-counts[value], value))
        vocabulary[name] = {value: code for code, value in enumerate(ordered)}
    return vocabulary
