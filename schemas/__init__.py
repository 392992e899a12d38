"""What flows through personastream: raw clickstream events in, persona events out."""

from schemas.dead_letter import DeadLetter
from schemas.events import (
    EVENT_TYPES,
    Event,
    EventError,
    PageType,
    parse_event,
)
from schemas.pages import PageStats
from schemas.persona import PersonaEvent

__all__ = [
    "DeadLetter",
    "EVENT_TYPES",
    "Event",
    "EventError",
    "PageStats",
    "PageType",
    "PersonaEvent",
    "parse_event",
]
