"""Fixtures: the sample UCI data and one real local Kafka broker for the whole test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.uci import read_uci
from stream.broker import LocalBroker, free_port
from tests.kafka_harness import ROOT, Pipeline

SAMPLE = ROOT / "data" / "sample" / "online_shoppers_sample.csv"


@pytest.fixture(scope="session")
def sample_frame():
    return read_uci(SAMPLE)


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
