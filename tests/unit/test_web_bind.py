"""`/metrics` (the worker's only HTTP endpoint) binds to a configurable address,
localhost unless told otherwise: metrics are for the local Prometheus, not the network.

The integration test of plates (tests/integration/test_plates_never_raw.py) checks the
socket a running worker actually listens on."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.app import create_app
from tollmon.network import load_network
from tollmon.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_web_server_binds_to_localhost_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOLLMON_WEB_HOST", raising=False)
    app = create_app(Settings(), load_network(REPO / "config" / "network.yaml"))
    assert app.conf.web_bind == "127.0.0.1"


def test_the_bind_address_comes_from_tollmon_web_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLMON_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("TOLLMON_WEB_PORT", "7001")
    app = create_app(Settings(), load_network(REPO / "config" / "network.yaml"))
    assert (app.conf.web_bind, app.conf.web_port) == ("0.0.0.0", 7001)
