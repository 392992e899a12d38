"""The worker's logging: quiet, and cheap.

Quiet while Kafka is unreachable: the Kafka client and Faust log an error per retry (tens of MB a
minute during an outage). :class:`CollapseRepeats` lets the first line of each kind through, then
one line a minute that says how many like it were held back, and counts them all.

Cheap: Faust's worker sets the root logger to DEBUG so that its start-up spinner turns on every log
call, and leaves it there once started; every debug call of the Kafka client (several per fetch and
per produced batch) then builds a record for handlers that drop it. :func:`log_at_handler_level`
undoes that.
"""

from __future__ import annotations

import logging
import time

from faust.utils.terminal.spinners import SpinnerHandler

from stream import metrics

NOISY = ("aiokafka", "faust", "mode", "kafka")
"""Loggers whose repeated warnings and errors are collapsed."""


class CollapseRepeats(logging.Filter):
    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(NOISY):
            return True
        kind = (record.name, str(record.msg))
        now = time.monotonic()
        last, held = self._last.get(kind, (-float("inf"), 0))
        if now - last < self.every_s:
            self._last[kind] = (last, held + 1)
            metrics.LOG_LINES_HELD.inc()
            return False
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - last:.0f} s)"
        self._last[kind] = (now, 0)
        return True


def collapse_repeats(every_s: float = 60.0) -> None:
    """Install :class:`CollapseRepeats` on every handler of the root logger."""
    quiet = CollapseRepeats(every_s)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, CollapseRepeats) for f in handler.filters):
            handler.addFilter(quiet)


def log_at_handler_level(root: logging.Logger | None = None) -> None:
    """Remove Faust's start-up spinner handler from the root logger and lower its level no further
    than its handlers pass: log calls below it return at once instead of building a record.

    >>> root = logging.Logger("demo", logging.DEBUG)
    >>> root.addHandler(logging.StreamHandler()); root.handlers[0].setLevel(logging.WARNING)
    >>> log_at_handler_level(root)
    >>> logging.getLevelName(root.level), root.isEnabledFor(logging.DEBUG)
    ('WARNING', False)
    """
    root = root or logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, SpinnerHandler)]:
        root.removeHandler(handler)
    levels = [handler.level for handler in root.handlers]
    if levels and min(levels) > root.level:
        root.setLevel(min(levels))
