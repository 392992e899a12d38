"""UCI Online Shoppers rows as streams of events whose folded features reproduce each row.

Data: UCI Online Shoppers Purchasing Intention (CC BY 4.0), Sakar et al., Neural Computing and
Applications 31, 6893-6908 (2019). Each row becomes one visit, ``uci-<i>``: its page views
(interleaved by type), dwell heartbeats of at most :data:`HEARTBEAT_S` visible seconds, and a page
catalog whose bounce/exit/value statistics average to the row's. The label is never emitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import orjson
import pandas as pd

from models.calendar import is_weekend, special_day
from models.features import SessionState, fold, start_visit
from schemas.events import Event, parse_event
from schemas.pages import PageStats

HEARTBEAT_S = 60.0
FIRST_YEAR = 2016
MONTHS = {"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "June": 6, "Jun": 6, "Jul": 7,
          "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12}
VISITOR_TYPES = {"Returning_Visitor": "returning", "New_Visitor": "new", "Other": "other"}
GROUPS = (("Administrative", "account"), ("Informational", "info"), ("ProductRelated", "product"))
COLUMNS = (
    "Administrative", "Administrative_Duration", "Informational", "Informational_Duration",
    "ProductRelated", "ProductRelated_Duration", "BounceRates", "ExitRates", "PageValues",
    "SpecialDay", "Month", "OperatingSystems", "Browser", "Region", "TrafficType", "VisitorType",
    "Weekend",
)


class UCIFormatError(ValueError):
    """A CSV that is not in UCI Online Shoppers format."""


def read_uci(path: str | Path) -> pd.DataFrame:
    """Read a UCI-format CSV; raise :class:`UCIFormatError` naming missing columns."""
    frame = pd.read_csv(path)
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise UCIFormatError(f"{path}: not a UCI Online Shoppers CSV, missing columns {missing}")
    for column in ("Weekend", "Revenue"):
        if column in frame.columns and frame[column].dtype != bool:
            frame[column] = frame[column].astype(str).str.upper().eq("TRUE")
    return frame


def session_id(index: int) -> str:
    return f"uci-{index}"


def visit_date(month: str, special: float, weekend: bool) -> date:
    """The first date from 2016 on with this month, special-day closeness and weekend flag."""
    number = MONTHS[month]
    for year in range(FIRST_YEAR, FIRST_YEAR + 28):
        day = date(year, number, 1)
        while day.month == number:
            if special_day(day) == special and is_weekend(day) == weekend:
                return day
            day += timedelta(days=1)
    raise UCIFormatError(f"no date has Month={month}, SpecialDay={special}, Weekend={weekend}")


def _spread(total: float, parts: int, heartbeat: float = HEARTBEAT_S) -> list[list[float]]:
    """Split ``total`` seconds over ``parts`` pages as heartbeats whose running sum is exactly ``total``."""
    share = total / parts
    pieces: list[list[float]] = []
    for _ in range(parts):
        page: list[float] = []
        left = share
        while left > heartbeat:
            page.append(heartbeat)
            left -= heartbeat
        if left > 0:
            page.append(left)
        pieces.append(page)
    flat = [p for page in pieces for p in page]
    if not flat:
        return pieces
    running = 0.0
    for piece in flat[:-1]:
        running += piece
    last = _solve(total, max(total - running, 0.0), lambda x: running + x)
    pieces[max(i for i, page in enumerate(pieces) if page)][-1] = last
    return pieces


def _solve(target: float, guess: float, result) -> float:
    """The non-negative float near ``guess`` whose ``result(x)`` is ``target``, or is nearest it.

    Exact whenever a float within 256 ulps of ``guess`` gives it; otherwise (a mean the float
    division cannot land on) off by the last ulp of ``target``.
    """
    best, best_error = max(guess, 0.0), math.inf
    up = down = guess
    for _ in range(256):
        for x in (up, down):
            if x < 0:
                continue
            error = abs(result(x) - target)
            if error == 0:
                return x
            if error < best_error:
                best, best_error = x, error
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
    return best


def _page_order(counts: list[int]) -> list[int]:
    """Interleave page groups evenly over the visit: the group index of each page view."""
    slots = [((k + 0.5) / n, g) for g, n in enumerate(counts) for k in range(n)]
    return [g for _, g in sorted(slots)]


def _page_stats(value: float, n: int) -> list[float]:
    """``n`` per-page values whose mean, summed in order as :func:`fold` does, is exactly ``value``."""
    values = [value] * n
    running = 0.0
    for v in values[:-1]:
        running += v
    total = _solve(value, value * n, lambda x: x / n)
    values[-1] = _solve(total, total - running, lambda x: running + x)
    return values


@dataclass(frozen=True)
class UCISession:
    """One UCI row as a visit: its events (JSON-ready dicts, in time order) and page catalog."""

    session_id: str
    events: list[dict]
    pages: list[PageStats]


def row_session(index: int, row: pd.Series, visit_start: datetime) -> UCISession:
    """Events and page catalog that reproduce ``row`` when folded."""
    sid = session_id(index)
    counts = [int(row[group]) for group, _ in GROUPS]
    page_views = sum(counts)
    order = _page_order(counts) if page_views else [-1]
    total = len(order)
    bounce = _page_stats(float(row["BounceRates"]), total)
    exits = _page_stats(float(row["ExitRates"]), total)
    values = _page_stats(float(row["PageValues"]), total)
    dwell = {g: iter(_spread(float(row[f"{group}_Duration"]), n)) for g, ((group, _), n)
             in enumerate(zip(GROUPS, counts)) if n}
    context = {
        "session_id": sid,
        "device": {"os": f"os{int(row['OperatingSystems'])}", "browser": f"br{int(row['Browser'])}"},
        "traffic_source": f"tt{int(row['TrafficType'])}",
        "visitor_type": VISITOR_TYPES[str(row["VisitorType"])],
        "region": f"r{int(row['Region'])}",
    }
    events: list[dict] = []
    pages: list[PageStats] = []
    t = visit_start
    for j, group in enumerate(order):
        page_type = GROUPS[group][1] if group >= 0 else "other"
        page = {"id": f"{sid}/p{j}", "type": page_type}
        pages.append(PageStats(page_id=page["id"], bounce_rate=bounce[j], exit_rate=exits[j], page_value=values[j]))
        events.append({"type": "page_view", "event_id": f"{sid}-{len(events)}", "ts": _iso(t), "page": page, **context})
        for seconds in next(dwell[group]) if group >= 0 else ():
            t += timedelta(seconds=seconds)
            events.append({"type": "dwell", "event_id": f"{sid}-{len(events)}", "ts": _iso(t), "page": page,
                           "seconds": seconds, **context})
    return UCISession(sid, events, pages)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def visit_start(index: int, row: pd.Series) -> datetime:
    """Start of visit ``index``: its row's date, at a time of day spread by the row index."""
    day = visit_date(str(row["Month"]), float(row["SpecialDay"]), bool(row["Weekend"]))
    seconds = (index * 2654435761) % 86_400
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(seconds=seconds)


def sessions(frame: pd.DataFrame) -> Iterator[UCISession]:
    """Every row of a UCI frame as a :class:`UCISession`, in row order."""
    for index, row in enumerate(frame.itertuples(index=False)):
        series = pd.Series(row._asdict())
        yield row_session(index, series, visit_start(index, series))


def catalog_lookup(pages: list[PageStats]):
    """A page lookup over a list of page statistics (for offline scoring and training)."""
    table = {p.page_id: (p.bounce_rate, p.exit_rate, p.page_value) for p in pages}
    return table.__getitem__


def parsed(events: list[dict]) -> list[Event]:
    """Parse events exactly as the stream does: JSON bytes through :func:`parse_event`."""
    return [parse_event(orjson.dumps(e)) for e in events]


def fold_session(session: UCISession) -> Iterator[tuple[Event, SessionState]]:
    """Fold a UCI session event by event, yielding the state after each (the same object)."""
    lookup = catalog_lookup(session.pages)
    state: SessionState | None = None
    for event in parsed(session.events):
        state = start_visit(None, event) if state is None else state
        fold(state, event, lookup)
        yield event, state


def prefix(session: UCISession, fraction: float) -> UCISession:
    """The visit cut after the first ``ceil(fraction * page views)`` page views and their dwell events."""
    views = [i for i, event in enumerate(session.events) if event["type"] == "page_view"]
    keep = max(1, math.ceil(fraction * len(views)))
    end = views[keep] if keep < len(views) else len(session.events)
    return UCISession(session.session_id, session.events[:end], session.pages)
