"""The actions catalog: the candidate actions (bandit arms) of every persona and intent band.

A catalog is a JSON file (shipped: ``models/artifacts/actions.json``; setting ``ACTIONS``) with a list
of entries ``{persona, band, action_id, text, payload}``. ``band`` null means every band of the persona;
entries of a specific band replace those for that band. The first entry of a context (persona, band)
is its **default** arm: the one the holdout gets. A context the catalog does not cover (a persona it
does not list, or ``Unassigned`` while a cold persona model warms up) has one arm, ``default``, whose
text comes from the built-in :data:`DEFAULT_ACTIONS` table (:func:`recommend`).

>>> catalog = ActionCatalog.model_validate({"actions": [
...     {"persona": "Bouncer", "band": None, "action_id": "simplify", "text": "one clear call to action"},
...     {"persona": "Bouncer", "band": None, "action_id": "search", "text": "open with a search box"},
...     {"persona": "Bouncer", "band": "high", "action_id": "checkout", "text": "show the checkout button"}]})
>>> [a.action_id for a in catalog.arms("Bouncer", "low")], catalog.default("Bouncer", "high").action_id
(['simplify', 'search'], 'checkout')
>>> catalog.arms("Researcher", "low")[0].text
'offer to email the products viewed; suggest guides'
"""

from __future__ import annotations

from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal, Mapping

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.intent import ModelFileError
from models.persona.naming import ARCHETYPES, HIGH_INTENT

CATALOG = Path(__file__).parent / "artifacts" / "actions.json"
"""The shipped catalog: the built-in texts below are the default arm of each context, plus alternatives."""
PERSONAS = (HIGH_INTENT, *ARCHETYPES)
"""Persona names a catalog may use: those the naming rule can give."""
Band = Literal["low", "medium", "high"]
BANDS: tuple[Band, ...] = ("low", "medium", "high")

DEFAULT_ACTIONS: dict[tuple[str, str], str] = {
    (HIGH_INTENT, "high"): "show reviews and delivery date; keep checkout one click away; no discount",
    (HIGH_INTENT, "medium"): "show reviews, stock level and free-shipping threshold",
    (HIGH_INTENT, "low"): "remind of items viewed; offer to save the cart",
    ("Researcher", "high"): "show comparison table and reviews next to add-to-cart",
    ("Researcher", "medium"): "offer a side-by-side comparison of viewed products",
    ("Researcher", "low"): "offer to email the products viewed; suggest guides",
    ("Window Shopper", "*"): "show bestsellers and new arrivals in the category",
    ("Window Shopper", "high"): "highlight the viewed product with social proof",
    ("Bouncer", "*"): "simplify the landing page: one clear call to action, fast mobile layout",
    ("Account & Cart Visitor", "high"): "streamline checkout: saved address and payment",
    ("Account & Cart Visitor", "*"): "time-limited discount code on the cart",
    ("Info Seeker", "*"): "surface shipping, returns and FAQ answers next to products",
    ("Skimmer", "*"): "show fewer, larger product cards and quick filters",
    ("Deal Seeker", "*"): "show the price-drop and bundle offers of the products searched",
    ("Mobile Browser", "*"): "sticky add-to-cart bar and one-tap wallet checkout on mobile",
    ("*", "high"): "show reviews and a clear checkout button",
    ("*", "medium"): "show related products",
    ("*", "low"): "no intervention",
}
"""(persona name or ``*``, intent band or ``*``) -> the built-in action text (before catalogs)."""


def recommend(persona: str, band: str, mapping: Mapping[tuple[str, str], str] = DEFAULT_ACTIONS) -> str:
    """The built-in action text for a persona in an intent band: exact match, then (persona, *), (*, band), (*, *)."""
    for key in ((persona, band), (persona, "*"), ("*", band), ("*", "*")):
        if key in mapping:
            return mapping[key]
    return "no intervention"


class CatalogError(ModelFileError):
    """An actions catalog that is missing, not JSON, or has an invalid entry (named in the message).
    A :class:`ModelFileError`, so the worker stops at start-up as for a broken model file."""


class Action(BaseModel):
    """One candidate action (an arm) of a persona, for one intent band or all (``band`` null)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    persona: str
    band: Band | None = None
    action_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    text: str = Field(min_length=1, max_length=300)
    payload: dict[str, Any] = Field(default_factory=dict, description="free-form data for the page showing it")

    @field_validator("persona")
    @classmethod
    def _known_persona(cls, persona: str) -> str:
        if persona not in PERSONAS:
            raise ValueError(f"unknown persona {persona!r}; known: {', '.join(PERSONAS)}")
        return persona


class ActionCatalog(BaseModel):
    """The candidate actions of every context (persona, band); the first of a context is its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: list[Action] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> ActionCatalog:
        seen: set[tuple[str, str | None, str]] = set()
        for index, action in enumerate(self.actions):
            key = (action.persona, action.band, action.action_id)
            if key in seen:
                raise ValueError(f"entry {index} ({action.persona!r}, band {action.band}): action_id "
                                 f"{action.action_id!r} appears twice")
            seen.add(key)
        return self

    @cached_property
    def _contexts(self) -> dict[tuple[str, str | None], tuple[Action, ...]]:
        contexts: dict[tuple[str, str | None], list[Action]] = {}
        for action in self.actions:
            contexts.setdefault((action.persona, action.band), []).append(action)
        return {key: tuple(arms) for key, arms in contexts.items()}

    def arms(self, persona: str, band: str) -> tuple[Action, ...]:
        """The candidate actions of a visit of ``persona`` in ``band``, the default first."""
        found = self._contexts.get((persona, band)) or self._contexts.get((persona, None))
        return found or (Action.model_construct(persona=persona, band=None, action_id="default",
                                                text=recommend(persona, band), payload={}),)

    def default(self, persona: str, band: str) -> Action:
        return self.arms(persona, band)[0]

    def action(self, persona: str, band: str, action_id: str) -> Action | None:
        """The arm ``action_id`` of a context, if the catalog has it."""
        return next((a for a in self.arms(persona, band) if a.action_id == action_id), None)

    def listing(self) -> list[dict[str, str | None]]:
        """``{persona, band, action_id, text}`` of every entry, in file order (``personastream actions --json``)."""
        return [{"persona": a.persona, "band": a.band, "action_id": a.action_id, "text": a.text} for a in self.actions]

    @classmethod
    def load(cls, path: str | Path = CATALOG) -> ActionCatalog:
        """Read and validate a catalog; :class:`CatalogError` names the file and the entry at fault."""
        path = Path(path)
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise CatalogError(f"actions catalog {path} is missing") from None
        except orjson.JSONDecodeError as exc:
            raise CatalogError(f"actions catalog {path} is not valid JSON: {exc}") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise CatalogError(f"actions catalog {path}: {_describe(exc, raw)}") from None


@cache
def default_catalog() -> ActionCatalog:
    """The shipped catalog (:data:`CATALOG`), loaded once."""
    return ActionCatalog.load(CATALOG)


def _describe(exc: ValidationError, raw: Any) -> str:
    """The first error, naming the entry (index, persona, action_id) it is in."""
    error = exc.errors(include_url=False)[0]
    loc = error["loc"]
    message = error["msg"].removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "actions" and isinstance(loc[1], int):
        entry = raw["actions"][loc[1]]
        name = (f" ({entry.get('persona')!r}, action_id {entry.get('action_id')!r})"
                if isinstance(entry, dict) else "")
        where = ".".join(str(p) for p in loc[2:]) or "entry"
        return f"entry {loc[1]}{name}: {where}: {message}"
    return f"{'.'.join(str(p) for p in loc) or 'catalog'}: {message}"
