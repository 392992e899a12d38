"""A record that could not be processed, with the reason, kept on the dead-letter topic."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from schemas.scrub import scrub_text

MAX_PAYLOAD_CHARS = 1024


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str
    topic: str
    partition: int
    offset: int
    received_at: datetime
    payload: str

    @classmethod
    def for_payload(cls, raw: bytes, **fields: object) -> "DeadLetter":
        """Build a dead letter with the raw payload decoded, scrubbed and truncated."""
        text = raw[: MAX_PAYLOAD_CHARS * 4].decode("utf-8", errors="replace")
        return cls(payload=scrub_text(text, max_len=MAX_PAYLOAD_CHARS), **fields)
