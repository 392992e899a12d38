"""The logging of the worker and the collector: quiet, private, and cheap.

Quiet while Kafka is unreachable or clients send garbage: the Kafka client and Faust log an error
per retry (tens of MB a minute during an outage), aiohttp one with a traceback per refused request.
:class:`CollapseRepeats` lets the first line of each kind through, then one line a minute that says
how many like it were held back, and counts them all.

Private: a web server's lines carry the client's address and the text of its request (an email in
an over-long URL, a malformed header). :class:`ScrubPersonalData` passes them, and every line of
level warning or above (an exception's message may quote its input), through the privacy rule of
:mod:`schemas.privacy`, cut to a bounded length.

Cheap: Faust's worker sets the root logger to DEBUG so that its start-up spinner turns on every log
call, and leaves it there once started; every debug call of the Kafka client (several per fetch and
per produced batch) then builds a record for handlers that drop it. :func:`log_at_handler_level`
undoes that.
"""

from __future__ import annotations

import logging
import time

import faust
from faust.utils.terminal.spinners import SpinnerHandler

from schemas.privacy import scrub_text
from stream import metrics

NOISY = ("aiokafka", "faust", "mode", "kafka", "aiohttp")
"""Loggers whose repeated warnings and errors are collapsed."""
REQUEST_TEXT = ("aiohttp", "faust.web", "stream.web")
"""Loggers whose lines of any level may carry a client's address or request text."""
MAX_MESSAGE_CHARS = 1000
MAX_TRACEBACK_CHARS = 4000


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


class ScrubPersonalData(logging.Filter):
    """The message and traceback of a line that may carry personal data, scrubbed and cut (the line is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not record.name.startswith(REQUEST_TEXT):
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the template
            message = f"{record.msg} (arguments that do not fit: {record.args!r})"
        record.msg, record.args = scrub_text(message, MAX_MESSAGE_CHARS), ()
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text, MAX_TRACEBACK_CHARS)
        return True


def guard_log_lines(every_s: float = 60.0) -> None:
    """Install :class:`CollapseRepeats`, then :class:`ScrubPersonalData`, on every handler of the root logger
    (collapsed lines are never scrubbed, and a kind of line is recognised by its unscrubbed template)."""
    quiet, private = CollapseRepeats(every_s), ScrubPersonalData()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, CollapseRepeats) for f in handler.filters):
            handler.addFilter(quiet)
        if not any(isinstance(f, ScrubPersonalData) for f in handler.filters):
            handler.addFilter(private)


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


class GuardedWorker(faust.Worker):
    """Faust's worker with :func:`guard_log_lines` installed as soon as it has set up the root logger, before
    its web server or Kafka clients start."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        guard_log_lines()
