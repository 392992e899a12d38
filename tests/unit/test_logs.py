"""The worker's and the collector's logging: repeated errors collapsed, personal data scrubbed, debug calls cheap."""

import doctest
import io
import logging

from faust.utils.terminal.spinners import Spinner, SpinnerHandler

import stream.logs
from stream.logs import CollapseRepeats, ScrubPersonalData, log_at_handler_level


def test_doctests() -> None:
    assert doctest.testmod(stream.logs).failed == 0


def test_faust_spinner_handler_goes_and_debug_calls_stop_at_the_logger() -> None:
    root = logging.Logger("worker-root", logging.DEBUG)  # as Faust's worker leaves the root logger
    root.addHandler(logging.StreamHandler())
    root.handlers[0].setLevel(logging.WARNING)
    root.addHandler(SpinnerHandler(Spinner(), level=logging.DEBUG))
    log_at_handler_level(root)
    assert not any(isinstance(h, SpinnerHandler) for h in root.handlers)
    assert not root.isEnabledFor(logging.INFO) and root.isEnabledFor(logging.WARNING)


def test_a_debug_worker_keeps_debug_logs() -> None:
    root = logging.Logger("debug-root", logging.DEBUG)
    root.addHandler(logging.StreamHandler())  # level NOTSET: it takes everything
    log_at_handler_level(root)
    assert root.isEnabledFor(logging.DEBUG)


def _logged(*calls: tuple[str, int, str, tuple, bool]) -> str:
    """What a handler with the filters writes for (logger, level, template, args, with a traceback) calls."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(CollapseRepeats())
    handler.addFilter(ScrubPersonalData())
    for name, level, template, args, traceback in calls:
        logger = logging.Logger(name)
        logger.addHandler(handler)
        try:
            raise ValueError("bad request line: GET /?to=jane.doe@example.com HTTP/1.1")
        except ValueError:
            logger.log(level, template, *args, exc_info=traceback)
    return out.getvalue()


def test_web_server_lines_are_scrubbed_with_their_traceback_and_collapsed() -> None:
    hostile = ("aiohttp.server", logging.ERROR, "Error handling request from %s", ("203.0.113.9",), True)
    written = _logged(*[hostile] * 1000, ("aiohttp.access", logging.INFO, "%s GET /?to=%s", ("203.0.113.9", "jo@x.io"),
                                          False))
    assert written.count("Error handling request from [ip]") == 1 and "ValueError: bad request line" in written
    assert "INFO aiohttp.access: [ip] GET /?to=[email]" in written
    assert "203.0.113.9" not in written and "jane.doe" not in written and "jo@x.io" not in written


def test_warnings_of_any_logger_are_scrubbed_and_other_lines_kept_as_they_are() -> None:
    written = _logged(("stream.delivery", logging.WARNING, "delivery failed for %s", ("jo@x.io",), False),
                      ("aiokafka", logging.INFO, "connected to %s", ("127.0.0.1:9092",), False),
                      ("stream.agents", logging.ERROR, "odd %s %s", ("one",), False))
    assert "WARNING stream.delivery: delivery failed for [email]" in written
    assert "INFO aiokafka: connected to 127.0.0.1:9092" in written
    assert "ERROR stream.agents: odd %s %s (arguments that do not fit: ('one',))" in written
    long = _logged(("aiohttp.server", logging.ERROR, "%s", ("x" * 100_000,), False))
    assert len(long) < 1100
