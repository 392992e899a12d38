"""Session state and session features: the one feature function shared by training and serving.

A session's state is folded event by event (:func:`fold`); :func:`session_features` turns a state
into the model's feature vector. Training replays UCI rows as events through the same two
functions, so a feature the stream cannot compute does not exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from operator import attrgetter
from datetime import datetime, timezone
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

DEDUP_WINDOW = 8


@dataclass(slots=True)
class SessionState:
    """Everything kept per visit; small, flat and serializable to a few hundred bytes."""

    visit: int = 0
    start_ts: float = 0.0
    last_ts: float = 0.0
    events: int = 0
    n_admin: int = 0
    d_admin: float = 0.0
    n_info: int = 0
    d_info: float = 0.0
    n_product: int = 0
    d_product: float = 0.0
    n_pages: int = 0
    sum_bounce: float = 0.0
    sum_exit: float = 0.0
    sum_value: float = 0.0
    os: str = ""
    browser: str = ""
    region: str = ""
    traffic: str = ""
    visitor: str = ""
    device_class: str = ""
    entry_page: str = ""
    exit_page: str = ""
    clicks: int = 0
    max_scroll: float = 0.0
    cart_adds: int = 0
    searches: int = 0
    purchased: bool = False
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
    recent_ids: list[str] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        # a right-sized copy: orjson's own result keeps its larger output buffer resident (~4 KB per
        # blob in a table of 1M sessions, against ~0.5 KB copied; see BENCHMARKS.md)
        return bytes(memoryview(orjson.dumps(_state_values(self))))

    @classmethod
    def from_bytes(cls, raw: bytes) -> "SessionState":
        return cls(*orjson.loads(raw))


_state_values = attrgetter(*(f.name for f in fields(SessionState)))




def _epoch(ts: datetime) -> float:
    return ts.timestamp()


def start_visit(state: SessionState | None, event: Event) -> SessionState:
    """A fresh visit whose context (device, source, visitor type) comes from its first event."""
    return SessionState(
        visit=0 if state is None else state.visit + 1,
        start_ts=_epoch(event.ts),
        last_ts=_epoch(event.ts),
        os=event.device.os,
        browser=event.device.browser,
        region=event.region,
        traffic=event.traffic_source,
        visitor=event.visitor_type.value,
        device_class=event.device.device_class.value,
        entry_page=event.page.id,
    )


def fold(state: SessionState, event: Event, pages: PageLookup) -> None:
    """Apply one event of this visit to ``state`` in place."""
    state.events += 1
    state.last_ts = max(state.last_ts, _epoch(event.ts))
    kind = event.type
    page_type = event.page.type
    if kind == "page_view":
        if page_type in PRODUCT_RELATED:
            state.n_product += 1
        elif page_type in ADMINISTRATIVE:
            state.n_admin += 1
        elif page_type in INFORMATIONAL:
            state.n_info += 1
        bounce, exit_, value = pages(event.page.id)
        state.n_pages += 1
        state.sum_bounce += bounce
        state.sum_exit += exit_
        state.sum_value += value
        state.exit_page = event.page.id
    elif kind == "dwell":
        if page_type in PRODUCT_RELATED:
            state.d_product += event.seconds
        elif page_type in ADMINISTRATIVE:
            state.d_admin += event.seconds
        elif page_type in INFORMATIONAL:
            state.d_info += event.seconds
    elif kind == "click":
        state.clicks += 1
    elif kind == "scroll":
        state.max_scroll = max(state.max_scroll, event.depth_pct)
    elif kind == "add_to_cart":
        state.cart_adds += 1
    elif kind == "search":
        state.searches += 1
    elif kind == "purchase":
        state.purchased = True


def is_duplicate(state: SessionState, event_id: str) -> bool:
    """True if ``event_id`` was among this visit's recent events; remembers it otherwise."""
    if event_id in state.recent_ids:
        return True
    state.recent_ids.append(event_id)
    if len(state.recent_ids) > DEDUP_WINDOW:
        del state.recent_ids[0]
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


def raw_context(state: SessionState) -> dict[str, str]:
    """The categorical values of a visit before encoding."""
    start = datetime.fromtimestamp(state.start_ts, tz=timezone.utc)
    return {
        "Month": str(start.month),
        "OperatingSystems": state.os,
        "Browser": state.browser,
        "Region": state.region,
        "TrafficType": state.traffic,
        "VisitorType": state.visitor,
    }


def session_features(state: SessionState, vocabulary: Vocabulary) -> list[float]:
    """The feature vector of a visit, in :data:`FEATURES` order (NaN for unknown categories)."""
    start = datetime.fromtimestamp(state.start_ts, tz=timezone.utc).date()
    n = state.n_pages
    context = raw_context(state)
    codes = [float(vocabulary[name].get(context[name], math.nan)) for name in CATEGORICAL]
    total_pages = state.n_admin + state.n_info + state.n_product
    total_duration = state.d_admin + state.d_info + state.d_product
    return [
        state.n_admin, state.d_admin,
        state.n_info, state.d_info,
        state.n_product, state.d_product,
        state.sum_bounce / n if n else math.nan,
        state.sum_exit / n if n else math.nan,
        state.sum_value / n if n else 0.0,
        special_day(start),
        *codes,
        float(is_weekend(start)),
        total_pages, total_duration,
        state.d_product / state.n_product if state.n_product else 0.0,
        state.sum_value,
        state.n_product / total_pages if total_pages else math.nan,
        total_duration / total_pages if total_pages else 0.0,
        state.d_admin / state.n_admin if state.n_admin else 0.0,
        state.d_info / state.n_info if state.n_info else 0.0,
        (state.sum_exit - state.sum_bounce) / n if n else math.nan,
    ]


def build_vocabulary(contexts: Sequence[Mapping[str, str]]) -> dict[str, dict[str, int]]:
    """Codes for every categorical value seen in training, most frequent first."""
    vocabulary: dict[str, dict[str, int]] = {}
    for name in CATEGORICAL:
        counts: dict[str, int] = {}
        for context in contexts:
            counts[context[name]] = counts.get(context[name], 0) + 1
        ordered = sorted(counts, key=lambda value: (-counts[value], value))
        vocabulary[name] = {value: code for code, value in enumerate(ordered)}
    return vocabulary
