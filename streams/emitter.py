"""Send detector outputs on: output topics, metrics, and the Alertmanager book.

Outputs are staged synchronously (metrics recorded, messages encoded into an outbox)
and handed to the producer by `flush`, once per batch of input rather than once per
output. The ingest step flushes before its batch is acknowledged, and Faust flushes
the producer before it commits offsets, so every output of an input is on its way
to Kafka before that input counts as processed (at-least-once).

Messages go to the producer by topic name (`Publish`), not through Faust's topic
handles: those wrap every message in a channel message, a future and a sensor call
on top of the aiokafka send (docs/profiling.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

import msgspec

from detectors.alerts import Alert
from tollmon.alerting import AlertBook
from tollmon.pipeline import Outputs
from tollmon.recorder import MetricsRecorder
from tollmon.weighing_flow import PairOutputs

_encode = msgspec.json.Encoder().encode

Headers = list[tuple[str, bytes]]
# (topic name, key, value, headers)
_Outgoing = tuple[str, bytes | None, bytes | None, Headers | None]


class Publish(Protocol):
    """Hands one message to the producer; returns once the producer holds it."""

    def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> Awaitable[object]: ...


class Emitter:
    """Publishes estimates and alerts, and records them in the metrics."""

    def __init__(
        self, topics: Any, recorder: MetricsRecorder, book: AlertBook, publish: Publish
    ) -> None:
        self._estimates = topics.estimates.get_topic_name()
        self._alerts = topics.alerts.get_topic_name()
        self._recorder = recorder
        self._book = book
        self._publish = publish
        self._outbox: list[_Outgoing] = []
        # One flush at a time, so the agent's and the timers' messages leave in staged order.
        self._flushing = asyncio.Lock()

    def __len__(self) -> int:
        """Messages staged and not yet handed to the producer."""
        return len(self._outbox)

    def stage(self, out: Outputs) -> None:
        """Record one call's outputs in the metrics and queue its messages for `flush`."""
        estimates_topic = self._estimates
        for estimate in out.estimates:
            self._recorder.estimate(estimate)
            key = f"{estimate.plaza_id}/{estimate.direction}".encode()
            self._outbox.append((estimates_topic, key, _encode(estimate), None))
        # A batch updates a lane's ratio many times; the gauge shows the last.
        for lane, ratio in dict(out.etc_ratios).items():
            self._recorder.etc_ratio(lane, ratio)
        for approach_kind, vehicles in out.corrections:
            self._recorder.correction(approach_kind, vehicles)
        if out.alerts:
            self.stage_alerts(out.alerts)

    def stage_pair_outputs(self, out: PairOutputs) -> None:
        for exit_plaza, outcome in out.outcomes:
            self._recorder.weight_pair(exit_plaza, outcome)
        for estimate in out.biases:
            self._recorder.scale_bias(estimate)
        self.stage_alerts(out.alerts)

    def stage_alerts(self, alerts: list[Alert]) -> None:
        alerts_topic = self._alerts
        for alert in alerts:
            replaced, is_new = self._book.record(alert)
            self._recorder.alert(alert, replaced, is_new)
            self._outbox.append((alerts_topic, alert.alert_id.encode(), _encode(alert), None))

    def stage_message(
        self,
        topic: Any,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue a message (for a Faust topic handle) behind the outputs staged before it."""
        self._outbox.append((topic.get_topic_name(), key, value, headers))

    async def flush(self) -> None:
        """Hand every staged message to the producer, in the order staged."""
        publish = self._publish
        async with self._flushing:
            while self._outbox:
                outbox, self._outbox = self._outbox, []
                for topic, key, value, headers in outbox:
                    await publish(topic, key, value, headers)

    async def emit(self, out: Outputs) -> None:
        self.stage(out)
        await self.flush()

    async def emit_pair_outputs(self, out: PairOutputs) -> None:
        self.stage_pair_outputs(out)
        await self.flush()
