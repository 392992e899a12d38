"""Shared fixtures: the sample UCI data. Broker fixtures live in ``tests/broker/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.training.uci import read_uci

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "online_shoppers_sample.csv"


@pytest.fixture(scope="session")
def sample_frame():
    return read_uci(SAMPLE)
