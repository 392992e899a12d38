"""Raw clickstream events: a pydantic discriminated union on ``type``.

Identifiers are pseudonymous: ``session_id`` is an opaque per-visit token chosen by the producer.
Fields that could identify a person (user ids, cookies, IPs, emails, phones) are not part of the
schema; unknown fields are dropped on parse, and free text is scrubbed by the validators.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from schemas.scrub import scrub_path, scrub_referrer, scrub_text

MAX_EVENT_BYTES = 16 * 1024
_OPAQUE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_LOOKS_PERSONAL = re.compile(r"@|^\+?\d{7,}$|^\d{1,3}(\.\d{1,3}){3}$")


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


class Device(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    os: str = Field("unknown", max_length=32)
    browser: str = Field("unknown", max_length=32)
    device_class: DeviceClass = DeviceClass.other
    screen: str = Field("unknown", max_length=16, description="screen width bucket, e.g. 's', 'm', 'l'")


class Page(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, max_length=128, description="stable page id (catalog key)")
    type: PageType = PageType.other
    path: str | None = Field(None, max_length=2048, description="URL path; query string stripped")

    @field_validator("path")
    @classmethod
    def _scrub_path(cls, value: str | None) -> str | None:
        return None if value is None else scrub_path(value)

    @field_validator("id")
    @classmethod
    def _scrub_id(cls, value: str) -> str:
        return scrub_text(value, max_len=128)


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str = Field(min_length=1, max_length=64, description="unique per event, for de-duplication")
    session_id: str = Field(description="opaque pseudonymous session token; never a user id, email or cookie id")
    ts: datetime = Field(description="event time (ISO 8601 or epoch milliseconds)")
    page: Page
    device: Device = Device()
    traffic_source: str = Field("unknown", max_length=32)
    visitor_type: VisitorType = VisitorType.other
    region: str = Field("unknown", max_length=16, description="coarse region code, never an address or IP")

    @field_validator("session_id")
    @classmethod
    def _opaque_session(cls, value: str) -> str:
        if not _OPAQUE_ID.match(value) or _LOOKS_PERSONAL.search(value):
            raise ValueError("session_id must be an opaque token of [A-Za-z0-9._:-], 1-128 chars, not an email, phone or IP")
        return value

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class PageView(_EventBase):
    type: Literal["page_view"]
    referrer: str | None = Field(None, max_length=2048, description="reduced to the referring host")

    @field_validator("referrer")
    @classmethod
    def _host_only(cls, value: str | None) -> str | None:
        return None if value is None else scrub_referrer(value)


class Click(_EventBase):
    type: Literal["click"]
    target: str | None = Field(None, max_length=64)


class Scroll(_EventBase):
    type: Literal["scroll"]
    depth_pct: float = Field(ge=0, le=100)


class Dwell(_EventBase):
    """Visible seconds on ``page`` since the previous dwell report for it (a heartbeat)."""

    type: Literal["dwell"]
    seconds: float = Field(ge=0, le=3600)


class AddToCart(_EventBase):
    type: Literal["add_to_cart"]
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(1, ge=1, le=10_000)
    price: float | None = Field(None, ge=0)


class RemoveFromCart(_EventBase):
    type: Literal["remove_from_cart"]
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(1, ge=1, le=10_000)


class Search(_EventBase):
    type: Literal["search"]
    query: str = Field("", max_length=512)

    @field_validator("query")
    @classmethod
    def _scrub_query(cls, value: str) -> str:
        return scrub_text(value, max_len=200)


class Purchase(_EventBase):
    type: Literal["purchase"]
    value: float | None = Field(None, ge=0)
    currency: str | None = Field(None, max_length=3)


Event = Annotated[
    Union[PageView, Click, Scroll, Dwell, AddToCart, RemoveFromCart, Search, Purchase],
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[str, ...] = (
    "page_view", "click", "scroll", "dwell", "add_to_cart", "remove_from_cart", "search", "purchase",
)
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_event(raw: bytes) -> Event:
    """Decode and validate one raw record; raise :class:`EventError` with a clear reason."""
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(f"payload too large: {len(raw)} bytes > {MAX_EVENT_BYTES}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventError(f"event must be a JSON object, got {type(data).__name__}")
    if data.get("type") not in EVENT_TYPES:
        raise EventError(f"unknown event type {data.get('type')!r}; expected one of {', '.join(EVENT_TYPES)}")
    try:
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventError(_describe(exc)) from None
