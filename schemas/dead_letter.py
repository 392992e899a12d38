"""A record that could not be processed, with the reason, kept on the dead-letter topic.

Dead letters are stored and published, so they follow :mod:`schemas.privacy` like events do: the
payload and the reason (which may echo input values) are scrubbed *before* they are cut, and cut
so that no partial identifier is left at the cut; in the payload, a quoted token that validation
would reject as a personal id is replaced as well.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.privacy import scrub_payload, scrub_text

MAX_PAYLOAD_CHARS = 1024
MAX_REASON_CHARS = 1024


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str = Field(description="why the record was not processed; scrubbed")
    topic: str
    partition: int
    offset: int
    received_at: datetime
    payload: str = Field(description=f"the record value as UTF-8 text, scrubbed, then cut to {MAX_PAYLOAD_CHARS} chars")
    note: str | None = Field(None, description="how the payload was derived: missing value, truncated, not UTF-8")

    @field_validator("reason")
    @classmethod
    def _scrub_reason(cls, value: str) -> str:
        return scrub_text(value, MAX_REASON_CHARS)

    @field_validator("payload")
    @classmethod
    def _scrub_payload(cls, value: str) -> str:
        return scrub_text(value, MAX_PAYLOAD_CHARS, strings=True)

    @classmethod
    def for_payload(cls, raw: bytes | None, **fields: object) -> "DeadLetter":
        """Build a dead letter from a raw record value (None for a tombstone or no record):
        decoded (invalid UTF-8 replaced), scrubbed, then truncated."""
        payload, notes = scrub_payload(raw, MAX_PAYLOAD_CHARS)
        if fields.get("note"):
            notes.insert(0, str(fields.pop("note")))
        fields.pop("note", None)
        return cls(payload=payload, note="; ".join(notes) or None, **fields)
