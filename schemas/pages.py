"""Page-level statistics: properties of pages (not sessions) that session features average."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PageStats(BaseModel):
    """Bounce rate, exit rate and page value of one page, as Google Analytics defines them."""

    model_config = ConfigDict(frozen=True)

    page_id: str = Field(min_length=1, max_length=128)
    bounce_rate: float = Field(ge=0, le=1)
    exit_rate: float = Field(ge=0, le=1)
    page_value: float = Field(ge=0)
    source: Literal["catalog", "observed"] = "catalog"
    views: int = Field(0, ge=0, description="page views behind observed statistics")
