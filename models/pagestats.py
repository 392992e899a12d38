"""Page statistics learned from a site's own visits, as Google Analytics defines them.

Per page: bounce rate (single-page visits per entrance), exit rate (exits per view) and page value
(revenue of the purchases that followed a view of the page in its visit, per unique page view).
Counts add up, so the statistics of a subset of visits are a subtraction away (:meth:`PageCounts.minus`),
which is how training computes out-of-fold page values that never include a row's own purchase.

>>> counts = PageCounts.of([(["home", "p1", "cart"], 30.0), (["home"], 0.0), (["p1", "home"], 0.0)])
>>> table = counts.table(min_views=1)
>>> table.pages["home"], table.pages["p1"]
((0.5, 0.6666666666666666, 10.0), (0.0, 0.0, 15.0))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import orjson

COUNTS = ("views", "entrances", "exits", "bounces", "unique_views", "revenue")
MIN_VIEWS = 20
"""Views a page needs for its own statistics; rarer pages get the site-wide prior."""


@dataclass
class PageCounts:
    """page id -> [views, entrances, exits, bounces, unique views, attributed revenue]."""

    pages: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, visits: Iterable[tuple[Sequence[str], float]]) -> "PageCounts":
        """Counts of visits given as (page ids viewed, revenue of the visit's purchases after them all)."""
        counts = cls()
        for pages, revenue in visits:
            counts.add(pages, revenue)
        return counts

    def add(self, pages: Sequence[str], revenue: float, valued: int | None = None) -> None:
        """Count one visit's page views; ``revenue`` is credited once to each distinct page among the first
        ``valued`` (default: all), those viewed before its first purchase."""
        if not pages:
            return
        for page in pages:
            self._entry(page)[0] += 1
        self._entry(pages[0])[1] += 1
        self._entry(pages[-1])[2] += 1
        if len(pages) == 1:
            self._entry(pages[0])[3] += 1
        for page in set(pages):
            self._entry(page)[4] += 1
        if revenue:
            for page in set(pages[:valued]):
                self._entry(page)[5] += revenue

    def _entry(self, page: str) -> list[float]:
        entry = self.pages.get(page)
        if entry is None:
            entry = self.pages[page] = [0.0] * len(COUNTS)
        return entry

    def minus(self, other: "PageCounts") -> "PageCounts":
        """These counts without ``other``'s (a subset of the visits they were counted from)."""
        out = {}
        for page, entry in self.pages.items():
            taken = other.pages.get(page)
            out[page] = [a - b for a, b in zip(entry, taken)] if taken else list(entry)
        return PageCounts(out)

    def table(self, min_views: int = MIN_VIEWS) -> "PageValues":
        """Statistics of pages with at least ``min_views`` views, and the site-wide prior for the rest."""
        total = [sum(entry[i] for entry in self.pages.values()) for i in range(len(COUNTS))]
        prior = _stats(total)
        return PageValues(prior, {page: _stats(entry) for page, entry in self.pages.items() if entry[0] >= min_views})


def _stats(entry: Sequence[float]) -> tuple[float, float, float]:
    views, entrances, exits, bounces, unique_views, revenue = entry
    return (bounces / entrances if entrances else 0.0, exits / views if views else 0.0,
            revenue / unique_views if unique_views else 0.0)


@dataclass(frozen=True)
class PageValues:
    """Page id -> (bounce rate, exit rate, page value), with a prior for other pages: a page lookup."""

    prior: tuple[float, float, float]
    pages: dict[str, tuple[float, float, float]]

    def __call__(self, page_id: str) -> tuple[float, float, float]:
        return self.pages.get(page_id, self.prior)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"prior": self.prior, "pages": self.pages}, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def load(cls, path: Path) -> "PageValues":
        """Read a ``pages.json``; ``ValueError`` says what is wrong with it."""
        data = orjson.loads(Path(path).read_bytes())
        prior = tuple(float(v) for v in data["prior"])
        pages = {str(page): tuple(float(v) for v in stats) for page, stats in data["pages"].items()}
        if len(prior) != 3 or any(len(stats) != 3 for stats in pages.values()):
            raise ValueError("every page needs [bounce rate, exit rate, page value]")
        return cls(prior, pages)  # type: ignore[arg-type]
