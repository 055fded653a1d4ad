"""The worker's logging: records below the configured level are never even built.

Faust's console spinner would set the root logger to DEBUG at levels of WARN and above,
so that every debug call of Faust, mode and aiokafka (one per message, one per request)
built a record for the spinner's handler.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streams.app import create_app, make_worker
from tollmon.network import load_network
from tollmon.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("level", ["warning", "error", "info"])
def test_the_root_logger_stays_at_the_configured_level(level: str) -> None:
    app = create_app(Settings(), load_network(REPO / "config" / "network.yaml"))
    worker = make_worker(app, level)
    root = logging.getLogger(f"test-root-{level}")
    root.addHandler(logging.NullHandler())
    root.setLevel(logging.getLevelName(level.upper()))

    worker.on_setup_root_logger(root, logging.getLevelName(level.upper()))

    assert not root.isEnabledFor(logging.DEBUG)
    assert [type(h) for h in root.handlers] == [logging.NullHandler]
