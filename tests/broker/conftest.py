"""Fixtures of the broker tests: one real local Kafka broker for the whole test session, and an
isolated pipeline (topics, app id, home, worker processes) per test."""

from __future__ import annotations

import pytest

from stream.tools.broker import LocalBroker, free_port
from tests.broker.harness import Pipeline


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A single-node KRaft broker on a free port under a temporary home; stopped by PID at the end."""
    local = LocalBroker(tmp_path_factory.mktemp("kafka-home"), port=free_port())
    local.start()
    try:
        yield f"127.0.0.1:{local.port}"
    finally:
        local.stop()


@pytest.fixture
def pipeline(broker, tmp_path):
    """Isolated topics and app id on the shared broker; every worker started is stopped afterwards."""
    created = Pipeline(bootstrap=broker, home=tmp_path)
    try:
        yield created
    finally:
        created.stop_all()
