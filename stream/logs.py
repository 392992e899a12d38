"""Quiet logs while Kafka is unreachable: the Kafka client and Faust log an error per retry (tens
of MB a minute during an outage). :class:`CollapseRepeats` lets the first line of each kind through,
then one line a minute that says how many like it were held back, and counts them all."""

from __future__ import annotations

import logging
import time

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
