"""Calendar features of a visit: month, weekend and closeness to a special shopping day."""

from __future__ import annotations

from datetime import date, timedelta

# Closeness value by |days| between the visit and a special day, as in the UCI data set:
# 1.0 on the day, falling by 0.2 per day to 0 five days away.
_CLOSENESS = {0: 1.0, 1: 0.8, 2: 0.6, 3: 0.4, 4: 0.2}


def mothers_day(year: int) -> date:
    """Second Sunday of May."""
    first = date(year, 5, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7)


def special_days(year: int) -> tuple[date, ...]:
    return (date(year, 2, 14), mothers_day(year))


def special_day(day: date) -> float:
    """Closeness of ``day`` to Valentine's Day or Mother's Day, in {0, 0.2, ..., 1.0}."""
    best = 0.0
    for special in special_days(day.year):
        best = max(best, _CLOSENESS.get(abs((day - special).days), 0.0))
    return best


def is_weekend(day: date) -> bool:
    return day.weekday() >= 5
