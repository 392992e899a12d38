"""The output record: who this session is like right now, and how likely it is to buy."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FeatureContribution(BaseModel):
    model_config = ConfigDict(frozen=True)

    feature: str
    contribution: float = Field(description="log-odds contribution to the intent score (LightGBM pred_contrib)")


class PersonaEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    session_id: str
    visit: int = Field(description="visit number within this session id (a new one starts after the inactivity gap)")
    event_time: datetime = Field(description="event time of the newest event reflected here")
    persona: str
    persona_id: int
    persona_confidence: float = Field(ge=0, le=1)
    intent_score: float = Field(ge=0, le=1, description="calibrated probability that this visit ends in a purchase")
    intent_band: str = Field(description="low | medium | high, thresholds in the intent model metadata")
    top_features: list[FeatureContribution] = Field(
        default_factory=list, description="features that contributed most to explained_score")
    explained_score: float | None = Field(
        None, description="the intent score top_features explain: re-explained when the visit's band changes or "
        "its score moves by more than the worker's explain_delta, so within that of intent_score")
    recommended_action: str = Field("none", description="text of the action decided for this visit (action_id)")
    decision_id: str | None = Field(
        None, description="id of the visit's current action decision: a new one when its persona or band changes")
    action_id: str | None = Field(None, description="the decided action of the actions catalog")
    policy: Literal["bandit", "holdout"] | None = Field(
        None, description="who decided: Thompson sampling, or the holdout share that always gets the default action")
    propensity: float | None = Field(
        None, ge=0, le=1, description="probability that this policy picks this action in this context at decision "
        "time (holdout: 1), for off-policy evaluation")
    intent_model_version: str
    persona_model_version: str
    bandit_model_version: str | None = Field(None, description="the shared action posteriors the decision used")
    events_seen: int = Field(description="events of this visit processed so far")
    page_views: int
    bot: bool = Field(False, description="a known crawler's visit (not learned from)")
