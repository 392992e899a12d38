"""The worker's logging: repeated errors collapsed, debug calls cheap."""

import doctest
import logging

from faust.utils.terminal.spinners import Spinner, SpinnerHandler

import stream.logs
from stream.logs import log_at_handler_level


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
