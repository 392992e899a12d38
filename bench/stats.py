"""Pure arithmetic of the benchmark: percentiles, latency matching and completion rates."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolating linearly between order statistics."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Count, p50, p90, p99 and max of latencies given in seconds, reported in milliseconds."""
    return {"n": len(seconds), **{f"p{q}_ms": round(percentile(seconds, q) * 1000, 2) for q in (50, 90, 99)},
            "max_ms": round(max(seconds, default=float("nan")) * 1000, 2)}


@dataclass
class LatencyMatcher:
    """Send times of each key's events, resolved by outputs that cover a key's first ``n`` events."""

    sent: dict[bytes, list[float]] = field(default_factory=lambda: defaultdict(list))
    done: dict[bytes, int] = field(default_factory=lambda: defaultdict(int))
    latencies: list[float] = field(default_factory=list)
    base: Mapping[bytes, int] = field(default_factory=dict)
    """events of each key sent before this run, which outputs count too."""

    def send(self, key: bytes, at: float) -> None:
        self.sent[key].append(at)

    def output(self, key: bytes, covered: int | None, at: float) -> None:
        """An output for ``key`` that reflects its first ``covered`` events (None: one more than before)."""
        times = self.sent.get(key)
        if times is None:
            return
        start = self.done[key]
        end = min(start + 1 if covered is None else covered - self.base.get(key, 0), len(times))
        if end > start:
            self.latencies.extend(at - t for t in times[start:end])
            self.done[key] = end

    @property
    def pending(self) -> int:
        return sum(len(times) for times in self.sent.values()) - len(self.latencies)


def completion(points: Sequence[tuple[float, bytes, int]], expected: Mapping[bytes, int]) -> dict[str, float]:
    """Rates from outputs ``(time s, key, events covered)``: events covered from the first output to the
    last one that covered more (with every visit complete: the last visit's final PersonaEvent).

    ``steady_eps`` counts only the middle 80% of the events (10% to 90% covered), which leaves out
    start-up and the tail of the last partitions.
    """
    total = sum(expected.values())
    ordered = sorted(points)
    covered: dict[bytes, int] = {}
    finished = 0
    cumulative = 0
    last_gain = float("nan")
    marks: dict[float, float] = {}
    for at, key, seen in ordered:
        want = expected.get(key)
        gain = 0 if want is None else min(seen, want) - covered.get(key, 0)
        if gain > 0:
            covered[key] = covered.get(key, 0) + gain
            cumulative += gain
            last_gain = at
            finished += covered[key] == want
            for share in (0.1, 0.9):
                if share not in marks and cumulative >= share * total:
                    marks[share] = at
    first = ordered[0][0] if ordered else float("nan")
    span = last_gain - first
    steady_span = marks.get(0.9, float("nan")) - marks.get(0.1, float("nan"))
    return {"events": total, "events_covered": cumulative, "sessions": len(expected), "sessions_complete": finished,
            "span_s": round(span, 3), "events_per_s": round(cumulative / span, 1) if span > 0 else float("nan"),
            "steady_events_per_s": round(0.8 * total / steady_span, 1) if steady_span > 0 else float("nan")}
