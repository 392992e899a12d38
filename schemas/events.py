"""Raw clickstream events: a pydantic discriminated union on ``type``.

Identifiers are pseudonymous: ``session_id`` is an opaque per-visit token chosen by the producer.
Fields that could identify a person (user ids, cookies, IPs, emails, phones) are not part of the
schema; unknown fields are dropped on parse, and every string field follows the one rule of
:mod:`schemas.privacy`: opaque ids that look personal reject the event, context fields of the wrong
shape become ``"unknown"``, free text is scrubbed.

:func:`parse_event` raises only :class:`EventError`, whatever the bytes. Event times must lie in
[:data:`MIN_TS`, :data:`MAX_TS`); whether an event is too far ahead of the worker's clock is the
stream's decision, not the schema's.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal, Union

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from schemas.privacy import (
    context_value,
    currency_value,
    device_value,
    memoised,
    opaque_problem,
    safe_echo,
    scrub_path,
    scrub_referrer,
    scrub_text,
)

MAX_EVENT_BYTES = 16 * 1024
MAX_REASON_CHARS = 300

MIN_TS = datetime(2000, 1, 1, tzinfo=timezone.utc)
"""Earliest accepted event time (inclusive)."""
MAX_TS = datetime(2100, 1, 1, tzinfo=timezone.utc)
"""Accepted event times are before this: far from ``datetime``'s limits in every time zone."""
_TS_RANGE = f"ts must be from {MIN_TS:%Y-%m-%d} to before {MAX_TS:%Y-%m-%d} UTC"

_REGION = re.compile(r"[A-Za-z0-9_\-]{1,16}")
_SLUG = re.compile(r"[A-Za-z0-9._\-]{1,32}")
_DEVICE = re.compile(r"[A-Za-z0-9 ._\-]{1,32}")
_SCREEN = re.compile(r"[A-Za-z0-9._\-]{1,16}")


class EventError(ValueError):
    """An input record that is not a valid event; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PageType(str, Enum):
    """What a page is for; decides which session counters a page view feeds."""

    home = "home"
    category = "category"
    product = "product"
    search = "search"
    cart = "cart"
    checkout = "checkout"
    account = "account"
    info = "info"
    other = "other"


class DeviceClass(str, Enum):
    desktop = "desktop"
    mobile = "mobile"
    tablet = "tablet"
    other = "other"


class VisitorType(str, Enum):
    new = "new"
    returning = "returning"
    other = "other"


def _opaque(name: str, max_len: int, memo: bool) -> AfterValidator:
    problem = memoised(lambda value: opaque_problem(value, max_len)) if memo else \
        (lambda value: opaque_problem(value, max_len))

    def check(value: str) -> str:
        reason = problem(value)
        if reason is not None:
            raise ValueError(f"{name} must be {reason}")
        return value
    return AfterValidator(check)


def _ts_utc(value: datetime) -> datetime:
    """The time in UTC (naive times are UTC). The field's bounds have checked the range of an aware
    time exactly; a naive one is checked again here, as UTC."""
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc)
    value = value.replace(tzinfo=timezone.utc)
    if MIN_TS <= value < MAX_TS:
        return value
    raise ValueError(_TS_RANGE)


def _context(shape: re.Pattern[str]) -> BeforeValidator:
    return BeforeValidator(memoised(lambda value: context_value(value, shape)))


def _free_text(max_len: int, memo: bool = False) -> AfterValidator:
    rule = lambda value: scrub_text(value, max_len)  # noqa: E731
    return AfterValidator(memoised(rule) if memo else rule)


SessionId = Annotated[str, _opaque("session_id", 128, memo=True)]
EventId = Annotated[str, _opaque("event_id", 64, memo=False)]
Timestamp = Annotated[datetime, Field(ge=MIN_TS, lt=MAX_TS), AfterValidator(_ts_utc)]
"""ISO 8601 (naive = UTC) or Unix time as pydantic reads numbers (milliseconds above 2e10, else
seconds), within [MIN_TS, MAX_TS): bounds pydantic-core checks before any conversion can overflow."""
Region = Annotated[str, _context(_REGION)]
TrafficSource = Annotated[str, _context(_SLUG)]
DeviceName = Annotated[str, BeforeValidator(memoised(lambda value: device_value(value, _DEVICE)))]
Screen = Annotated[str, _context(_SCREEN)]
Currency = Annotated[Union[str, None], BeforeValidator(currency_value)]


_DEVICE_NAME = "letters, digits, space . _ -, up to 32; versions cut to major.minor; anything else 'unknown'"


class Device(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    os: DeviceName = Field("unknown", description=_DEVICE_NAME)
    browser: DeviceName = Field("unknown", description=_DEVICE_NAME)
    device_class: DeviceClass = DeviceClass.other
    screen: Screen = Field("unknown", description="screen width bucket, e.g. 's', 'm', 'l' ([A-Za-z0-9._-], up to 16)")


class Page(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str, _free_text(128, memo=True)] = Field(
        min_length=1, max_length=128, description="stable page id (catalog key); identifiers scrubbed")
    type: PageType = PageType.other
    path: Annotated[str, Field(max_length=2048), AfterValidator(memoised(scrub_path))] | None = Field(
        None, description="URL path; query string and fragment stripped, identifiers scrubbed")


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: EventId = Field(description="unique per event, for de-duplication: an opaque token of 1-64 "
                              "[A-Za-z0-9._:-], never an email, IP, card or phone number")
    session_id: SessionId = Field(description="opaque pseudonymous session token of 1-128 [A-Za-z0-9._:-]; never a "
                                  "user id, email, IP, card or phone number, or cookie id")
    ts: Timestamp = Field(description="event time: ISO 8601 (naive = UTC) or Unix time (milliseconds above "
                          "2e10, else seconds); 2000-01-01 <= ts < 2100-01-01 UTC")
    page: Page
    device: Device = Device()
    traffic_source: TrafficSource = Field("unknown", description="short slug [A-Za-z0-9._-], up to 32")
    visitor_type: VisitorType = VisitorType.other
    region: Region = Field("unknown", description="coarse region code [A-Za-z0-9_-], up to 16; never an address or IP")
    bot: bool = Field(False, strict=True, description="sent by a known crawler (the HTTP collector sets it from the "
                      "User-Agent): the visit is published as a bot visit and not learned from")


class PageView(_EventBase):
    type: Literal["page_view"]
    referrer: Annotated[str, Field(max_length=2048), AfterValidator(memoised(scrub_referrer))] | None = Field(
        None, description="reduced to the referring host; null if it has none")


class Click(_EventBase):
    type: Literal["click"]
    target: Annotated[str, Field(max_length=64), _free_text(64)] | None = None


class Scroll(_EventBase):
    type: Literal["scroll"]
    depth_pct: float = Field(ge=0, le=100, strict=True, allow_inf_nan=False)


class Dwell(_EventBase):
    """Visible seconds on ``page`` since the previous dwell report for it (a heartbeat)."""

    type: Literal["dwell"]
    seconds: float = Field(ge=0, le=3600, strict=True, allow_inf_nan=False)


class AddToCart(_EventBase):
    type: Literal["add_to_cart"]
    product_id: Annotated[str, _free_text(64, memo=True)] = Field(min_length=1, max_length=64)
    quantity: int = Field(1, ge=1, le=10_000, strict=True)
    price: float | None = Field(None, ge=0, le=1e9, strict=True, allow_inf_nan=False)


class RemoveFromCart(_EventBase):
    type: Literal["remove_from_cart"]
    product_id: Annotated[str, _free_text(64, memo=True)] = Field(min_length=1, max_length=64)
    quantity: int = Field(1, ge=1, le=10_000, strict=True)


class Search(_EventBase):
    type: Literal["search"]
    query: Annotated[str, _free_text(200)] = Field("", max_length=512, description="scrubbed, cut to 200 chars")


class Purchase(_EventBase):
    type: Literal["purchase"]
    value: float | None = Field(None, ge=0, le=1e12, strict=True, allow_inf_nan=False)
    currency: Currency = Field(None, description="ISO 4217-shaped code, upper-cased; anything else becomes null")


Event = Annotated[
    Union[PageView, Click, Scroll, Dwell, AddToCart, RemoveFromCart, Search, Purchase],
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[str, ...] = (
    "page_view", "click", "scroll", "dwell", "add_to_cart", "remove_from_cart", "search", "purchase",
)
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def _describe(exc: ValidationError) -> str:
    """The first error's location and message, never the input value, scrubbed all the same."""
    first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return scrub_text(f"{where}: {first['msg']}{more}", MAX_REASON_CHARS)


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def parse_event(raw: bytes | None) -> Event:
    """Decode and validate one raw record value; raise :class:`EventError` with a clear reason.

    Whatever ``raw`` is (a tombstone's None, any bytes), the only exception is :class:`EventError`.
    """
    try:
        return _parse(raw)
    except EventError:
        raise
    except Exception as exc:  # noqa: BLE001 - a safety net: nothing but EventError leaves parse_event
        raise EventError(f"invalid event (unexpected {type(exc).__name__})") from None


def _parse(raw: bytes | None) -> Event:
    if raw is None:
        raise EventError("empty record value (None: a tombstone), not an event")
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise EventError(f"record value must be bytes, got {type(raw).__name__}")
    size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
    if size > MAX_EVENT_BYTES:
        raise EventError(f"payload too large: {size} bytes > {MAX_EVENT_BYTES}")
    if not size:
        raise EventError("malformed JSON: empty payload")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventError(scrub_text(f"malformed JSON: {exc}", MAX_REASON_CHARS)) from None
    if not isinstance(data, dict):
        raise EventError(f"event must be a JSON object, got {_JSON_TYPES.get(type(data), 'a value')}")
    kind = data.get("type")
    if kind not in EVENT_TYPES:
        raise EventError(f"unknown event type {safe_echo(kind)}; expected one of {', '.join(EVENT_TYPES)}")
    try:
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventError(_describe(exc)) from None
