"""Record events and detector outputs in the §5 metrics, with cached label children."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from detectors.alerts import Alert
from detectors.etc_health import LaneKey
from detectors.queue import CORRECTION_KINDS, QueueEstimate
from detectors.scales import ScaleBiasEstimate
from tollmon.alerting import ONE_SHOT_KINDS
from tollmon.events import ApproachDetection, Event, LaneTransaction, WeighMeasurement
from tollmon.metrics import Metrics


class _Children:
    """`metric.labels(*values)` looked up once per label set: it is costly per event."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._labels: Callable[..., Any] = metric.labels
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        return self.child(values)

    def child(self, values: tuple[str, ...]) -> Any:
        """The child of a label tuple already built (no repacking of `*values`)."""
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._labels(*values)
        return child

    def remove(self, *values: str) -> None:
        """Drop a label set, so the series disappears from the scrape."""
        if self._cache.pop(values, None) is not None:
            self._metric.remove(*values)


class MetricsRecorder:
    """The one writer of a worker's metrics."""

    def __init__(self, metrics: Metrics) -> None:
        m = metrics
        self._arrivals = _Children(m.arrivals)
        self._transactions = _Children(m.lane_transactions)
        self._weighings = _Children(m.weighings)
        self._queue_veh = _Children(m.queue_vehicles)
        self._queue_m = _Children(m.queue_meters)
        self._wait = _Children(m.wait_seconds)
        self._level = _Children(m.congestion_level)
        self._open = _Children(m.open_lanes)
        self._spillback = _Children(m.spillback)
        self._corrections = _Children(m.queue_corrections)
        self._counted_approaches: set[tuple[str, str]] = set()
        self._etc_ratio = _Children(m.etc_failure_ratio)
        self._firing = _Children(m.alerts_firing)
        self._alerts = _Children(m.alerts)
        self._overloads = _Children(m.overloads_admitted)
        self._lag = _Children(m.consumer_lag_messages)
        self._pairs = _Children(m.weight_pairs)
        self._bias = _Children(m.scale_bias_ratio)
        self._bias_se = _Children(m.scale_bias_stderr_ratio)

    def event(self, event: Event) -> None:
        """Cumulative counters: every valid event counts, late or not."""
        if isinstance(event, LaneTransaction):
            self._transactions.child(
                (event.plaza_id, event.direction, event.lane_id, event.payment, event.result)
            ).inc()
        elif isinstance(event, ApproachDetection):
            self._arrivals.child((event.plaza_id, event.direction)).inc(event.count)
        elif isinstance(event, WeighMeasurement):
            self._weighings.child(
                (event.plaza_id, event.scale_id, event.station, event.quality)
            ).inc()

    def events(self, events: Iterable[Event]) -> None:
        """`event` for a batch. The counters are lock-free tallies (tollmon/tallies.py), so
        each event adds to its own label set's child: counting a batch by label set first
        cost more, as a batch's events rarely share one across thousands of plazas."""
        for event in events:
            self.event(event)

    def estimate(self, e: QueueEstimate) -> None:
        key = (e.plaza_id, e.direction)
        if key not in self._counted_approaches and e.method == "input_output":
            # An approach with a detector shows its corrections from its first count, at 0.
            self._counted_approaches.add(key)
            for kind in CORRECTION_KINDS:
                self._corrections.child((*key, kind))
        self._queue_veh.child(key).set(e.queue_veh)
        self._queue_m(*key).set(e.queue_m)
        self._wait(*key).set(e.wait_s)
        self._level(*key).set(e.level)
        self._open(*key).set(e.open_lanes)
        self._spillback(*key).set(1.0 if e.spillback else 0.0)

    def correction(self, key: tuple[str, str, str], vehicles: float) -> None:
        """Vehicles the queue estimator put back into (missed) or forgot from (phantom) an
        approach detector's count."""
        self._corrections.child(key).inc(vehicles)

    def etc_ratio(self, lane: LaneKey, ratio: float) -> None:
        self._etc_ratio.child(lane).set(ratio)

    def consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self._lag(topic, str(partition)).set(lag)

    def forget_consumer_lag(self, topic: str, partition: int) -> None:
        """A revoked partition's lag is another worker's to report now."""
        self._lag.remove(topic, str(partition))

    def weight_pair(self, exit_plaza: str, outcome: str) -> None:
        self._pairs(exit_plaza, outcome).inc()

    def scale_bias(self, estimate: ScaleBiasEstimate) -> None:
        key = (estimate.scale_id, estimate.plaza_id, estimate.station)
        self._bias(*key).set(estimate.bias_ratio)
        self._bias_se(*key).set(estimate.stderr_ratio)

    def alert(self, alert: Alert, replaced: Alert | None, is_new: bool) -> None:
        """Keep `alerts_firing` equal to the alerts firing now; count each new one once."""
        if alert.kind in ONE_SHOT_KINDS:
            self._alerts(alert.kind, alert.severity).inc()
            if alert.kind == "OVERLOAD_ADMITTED":
                self._overloads(alert.plaza_id).inc()
            return
        if replaced is not None:
            self._firing(replaced.kind, replaced.severity, replaced.plaza_id).dec()
        if alert.status == "firing":
            self._firing(alert.kind, alert.severity, alert.plaza_id).inc()
            if is_new:
                self._alerts(alert.kind, alert.severity).inc()
