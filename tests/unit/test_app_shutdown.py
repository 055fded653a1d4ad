"""A worker's shutdown: the input consumer stops first, so that what Faust stops after
it (its own consumer, the tables and their last changelog writes) has the event loop to
itself. While ingest went on, the open-trips table's final flush, one message per loop
turn, waited an ingest batch per message: 22 s at 3,000 plazas."""

from __future__ import annotations

from pathlib import Path

import pytest
from mode import Service

from streams.app import create_app
from streams.inputs import InputConsumer
from tollmon.network import load_network
from tollmon.settings import Settings

REPO = Path(__file__).resolve().parents[2]


class _Stopping(Service):
    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self._order = order

    async def on_stop(self) -> None:
        self._order.append("input consumer")


async def test_the_input_consumer_stops_before_fausts_consumer_and_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLMON_DATA_DIR", str(tmp_path))
    app = create_app(Settings(), load_network(REPO / "config" / "network.yaml"))
    assert isinstance(app.input_consumer, InputConsumer)
    order: list[str] = []

    async def stop_fausts_consumer_and_tables() -> None:
        order.append("Faust's consumer and tables")

    app.input_consumer = _Stopping(order)
    monkeypatch.setattr(app, "_stop_consumer", stop_fausts_consumer_and_tables)

    await app.on_stop()

    assert order == ["input consumer", "Faust's consumer and tables"]
