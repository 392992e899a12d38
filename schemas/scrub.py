"""Privacy scrubbing of free text before it reaches state, output or the dead-letter topic."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_IPV6 = re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_PHONE_OR_NUMBER = re.compile(r"\+?\d[\d\s().-]{6,}\d")
_CARD_LIKE_TOKEN = re.compile(r"\b[A-Za-z0-9_-]{32,}\b")

_RULES = (
    (_EMAIL, "[email]"),
    (_UUID, "[id]"),
    (_IPV6, "[ip]"),
    (_IPV4, "[ip]"),
    (_PHONE_OR_NUMBER, "[number]"),
    (_CARD_LIKE_TOKEN, "[token]"),
)

_ANY = re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in _RULES))
"""Matches wherever some rule would; most text has nothing to scrub and is checked in one pass."""


def scrub_text(text: str, max_len: int = 200) -> str:
    """Replace emails, IPs, ids, phone/long numbers and long tokens; truncate to ``max_len``."""
    if not _ANY.search(text):
        return text[:max_len]
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    return text[:max_len]


def scrub_path(path: str) -> str:
    """Keep only the path of a URL (no host, query or fragment) and scrub each segment."""
    path = urlsplit(path).path or "/"
    return scrub_text(path, max_len=256)


def scrub_referrer(referrer: str) -> str:
    """Reduce a referrer to its host: the path and query of another site are never kept."""
    parts = urlsplit(referrer if "//" in referrer else f"//{referrer}")
    return scrub_text(parts.hostname or "", max_len=128)
