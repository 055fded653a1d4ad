"""Send detector outputs on: output topics, metrics, and the Alertmanager book."""

from __future__ import annotations

from typing import Any

import msgspec

from detectors.alerts import Alert
from tollmon.alerting import AlertBook
from tollmon.pipeline import Outputs
from tollmon.recorder import MetricsRecorder
from tollmon.weighing_flow import PairOutputs

_encode = msgspec.json.Encoder().encode


class Emitter:
    """Publishes estimates and alerts, and records them in the metrics."""

    def __init__(self, topics: Any, recorder: MetricsRecorder, book: AlertBook) -> None:
        self._topics = topics
        self._recorder = recorder
        self._book = book

    async def emit(self, out: Outputs) -> None:
        for estimate in out.estimates:
            self._recorder.estimate(estimate)
            key = f"{estimate.plaza_id}/{estimate.direction}".encode()
            await self._topics.estimates.send(key=key, value=_encode(estimate))
        for lane, ratio in out.etc_ratios:
            self._recorder.etc_ratio(lane, ratio)
        await self.emit_alerts(out.alerts)

    async def emit_pair_outputs(self, out: PairOutputs) -> None:
        for exit_plaza, outcome in out.outcomes:
            self._recorder.weight_pair(exit_plaza, outcome)
        for estimate in out.biases:
            self._recorder.scale_bias(estimate)
        await self.emit_alerts(out.alerts)

    async def emit_alerts(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            replaced, is_new = self._book.record(alert)
            self._recorder.alert(alert, replaced, is_new)
            await self._topics.alerts.send(key=alert.alert_id.encode(), value=_encode(alert))
