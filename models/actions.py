"""Recommended actions: what to do for a visit, by its persona and intent band."""

from __future__ import annotations

from typing import Mapping

from models.persona.naming import HIGH_INTENT

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
    ("*", "high"): "show reviews and a clear checkout button",
    ("*", "medium"): "show related products",
    ("*", "low"): "no intervention",
}
"""(persona name or ``*``, intent band or ``*``) -> recommended action."""


def recommend(persona: str, band: str, mapping: Mapping[tuple[str, str], str] = DEFAULT_ACTIONS) -> str:
    """The action for a persona in an intent band: exact match, then (persona, *), (*, band), (*, *)."""
    for key in ((persona, band), (persona, "*"), ("*", band), ("*", "*")):
        if key in mapping:
            return mapping[key]
    return "no intervention"
