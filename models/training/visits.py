"""Recorded events as training visits: parsed by the stream's schema and privacy rule, cut into visits
by the stream's inactivity gap, and replayed into leakage-safe prefix states.

A visit's label is whether it contains a purchase. Its training rows are the states after the first
``k`` events, for ``k`` at fractions of the visit's events, cut *before its first purchase*
(:func:`prefix_end`): no row sees its purchase, nor anything after it (:func:`check_before_purchase`
enforces it).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from models.features import PageLookup, SessionState, fold, is_duplicate, start_visit
from schemas.events import Event, EventError, parse_event


class LeakageError(ValueError):
    """A training row that would see its visit's purchase or what followed it."""


@dataclass
class Visit:
    """One visit's events in arrival order (duplicates removed), as the stream would fold them.

    Its events are kept as their raw lines (a few hundred bytes each instead of a few KB parsed) and
    parsed again when replayed; what training needs of them besides is noted once, here.
    """

    session_id: str
    lines: list[bytes]
    start: float
    """Event time of its first event (Unix seconds)."""
    first_purchase: int | None = None
    """Index of its first purchase among its events, if any."""
    bot: bool = False
    revenue: float = 0.0
    """Value of its purchases (a purchase without a value counts 0)."""
    pages: list[str] = field(default_factory=list)
    """Page ids of its page views, in order."""
    pages_before_purchase: int = 0
    """Page views before its first purchase (all of them if it has none)."""

    @property
    def events(self) -> list[Event]:
        return [parse_event(line) for line in self.lines]

    @property
    def size(self) -> int:
        return len(self.lines)

    @property
    def bought(self) -> bool:
        return self.first_purchase is not None

    @property
    def learnable(self) -> int:
        """Events before its first purchase: the part of the visit training rows may see."""
        return self.size if self.first_purchase is None else self.first_purchase

    def add(self, line: bytes, event: Event) -> None:
        """Append a parsed event (and its line)."""
        if event.type == "purchase":
            if self.first_purchase is None:
                self.first_purchase = len(self.lines)
            self.revenue += event.value or 0.0
        elif event.type == "page_view":
            self.pages.append(event.page.id)
            if self.first_purchase is None:
                self.pages_before_purchase += 1
        self.bot = self.bot or event.bot
        self.lines.append(line)


@dataclass
class ReadReport:
    """What reading recorded events found: lines read, valid events, invalid lines by reason, duplicates."""

    lines: int = 0
    events: int = 0
    duplicates: int = 0
    invalid: Counter = field(default_factory=Counter)

    @property
    def invalid_lines(self) -> int:
        return sum(self.invalid.values())

    def summary(self) -> str:
        reasons = "; ".join(f"{n} x {reason}" for reason, n in self.invalid.most_common(3))
        return (f"{self.lines} lines: {self.events} events, {self.duplicates} duplicates, "
                f"{self.invalid_lines} invalid" + (f" ({reasons})" if reasons else ""))


def read_visits(lines: Iterable[bytes], gap_s: float, report: ReadReport | None = None) -> list[Visit]:
    """Parse every line as the stream does and cut each session's events into visits by ``gap_s``;
    invalid lines are counted in ``report`` by reason and skipped. Visits in order of their start."""
    report = report if report is not None else ReadReport()
    open_visits: dict[str, tuple[Visit, SessionState]] = {}
    done: list[Visit] = []
    for line in lines:
        report.lines += 1
        try:
            event = parse_event(line)
        except EventError as exc:
            report.invalid[exc.reason.split(":")[0][:80]] += 1
            continue
        ts = event.ts.timestamp()
        current = open_visits.get(event.session_id)
        if current is None or ts - current[1].last_ts > gap_s:
            if current is not None:
                done.append(current[0])
            tracker = start_visit(None if current is None else current[1], event)
            current = open_visits[event.session_id] = (Visit(event.session_id, [], ts), tracker)
        visit, tracker = current
        if is_duplicate(tracker, event.event_id):
            report.duplicates += 1
            continue
        tracker.last_ts = max(tracker.last_ts, ts)
        visit.add(bytes(line), event)
        report.events += 1
    done.extend(visit for visit, _ in open_visits.values())
    return sorted(done, key=lambda visit: visit.start)


def prefix_end(visit: Visit, fraction: float) -> int:
    """Events seen at ``fraction`` of the visit: ``max(1, ceil(fraction * events))``, cut before its first
    purchase (0 for a visit that starts with its purchase)."""
    return min(max(1, math.ceil(round(fraction * visit.size, 9))), visit.learnable)


def prefix_ends(visit: Visit, fractions: Sequence[float]) -> list[int]:
    """The distinct :func:`prefix_end` of ``fractions`` (none for a visit that starts with its purchase)."""
    return sorted({end for end in (prefix_end(visit, q) for q in fractions) if end})


def check_before_purchase(visit: Visit, seen: int) -> None:
    """Raise :class:`LeakageError` if a row after the first ``seen`` events would see the visit's purchase."""
    if visit.first_purchase is not None and seen > visit.first_purchase:
        raise LeakageError(f"a row of visit {visit.session_id} after {seen} events would see its purchase "
                           f"(event {visit.first_purchase + 1})")


def replay(visit: Visit, ends: Sequence[int], pages: PageLookup) -> list[SessionState]:
    """The visit's states after each of ``ends`` events (ascending), folded exactly as the stream folds;
    every one checked by :func:`check_before_purchase`."""
    for seen in ends:
        check_before_purchase(visit, seen)
    return _states(visit, ends, pages)


def final_state(visit: Visit, pages: PageLookup) -> SessionState:
    """The state after all of the visit's events, purchases included: what the persona model learns
    when the visit ends (never an intent training row)."""
    return _states(visit, [visit.size], pages)[-1]


def _states(visit: Visit, ends: Sequence[int], pages: PageLookup) -> list[SessionState]:
    wanted = set(ends)
    states: list[SessionState] = []
    state: SessionState | None = None
    for i, line in enumerate(visit.lines[:max(wanted, default=0)]):
        event = parse_event(line)
        state = start_visit(None, event) if state is None else state
        fold(state, event, pages)
        if i + 1 in wanted:
            states.append(replace(state, recent_ids=b""))
    return states
