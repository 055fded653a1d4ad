"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollmon.network import Network, load_network

SAMPLE_NETWORK_FILE = Path(__file__).resolve().parents[2] / "config" / "network.yaml"


@pytest.fixture(scope="session")
def network() -> Network:
    """The sample network of config/network.yaml; loaded once, since it is immutable."""
    return load_network(SAMPLE_NETWORK_FILE)
