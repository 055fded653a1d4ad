"""Every Prometheus metric of SPEC.md §5, declared once, on a registry passed in.

Label values never carry plates, pass ids or other unbounded values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tollmon.tallies import BatchHistogram, TallyCounter, TallyGauge

_APPROACH = ("plaza", "direction")

# Event lag spans sub-second live processing to hours of backlog after an outage;
# the buckets are roughly log-spaced over that range so both ends stay readable.
_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class Metrics:
    """The metrics a worker exposes on `/metrics`."""

    registry: CollectorRegistry
    queue_vehicles: TallyGauge
    queue_meters: TallyGauge
    wait_seconds: TallyGauge
    congestion_level: TallyGauge
    open_lanes: TallyGauge
    spillback: TallyGauge
    queue_corrections: TallyCounter
    arrivals: TallyCounter
    lane_transactions: TallyCounter
    etc_failure_ratio: TallyGauge
    weighings: TallyCounter
    weight_pairs: Counter
    scale_bias_ratio: TallyGauge
    scale_bias_stderr_ratio: TallyGauge
    alerts_firing: Gauge
    alerts: Counter
    overloads_admitted: Counter
    events: TallyCounter
    events_invalid: Counter
    events_late: TallyCounter
    event_lag_seconds: BatchHistogram
    consumer_lag_messages: Gauge
    plaza_info: TallyGauge

    def exposition(self) -> bytes:
        """The `/metrics` page: what `generate_latest(self.registry)` writes, faster."""
        return b"".join(self.exposition_parts())

    def exposition_parts(self) -> Iterator[bytes]:
        """`exposition` in parts of a few thousand lines, for a caller that interleaves.

        The tallies, whose series grow with the network, write their own lines
        (tollmon/tallies.py); the few others go through prometheus-client.
        """
        collectors = [getattr(self, f.name) for f in fields(self) if f.name != "registry"]
        own = [c for c in collectors if isinstance(c, TallyCounter | TallyGauge)]
        rest = _Collectors([c for c in collectors if not isinstance(c, TallyCounter | TallyGauge)])
        yield generate_latest(rest)
        for family in own:
            for part in family.exposition_parts():
                yield part.encode()

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Declare all metrics on `registry` (a fresh one when omitted)."""
        reg = registry if registry is not None else CollectorRegistry()

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(name, doc, labels, registry=reg)

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=reg)

        return cls(
            registry=reg,
            # Every approach's five, at every 5 s boundary at once: lock-free as well.
            queue_vehicles=TallyGauge(
                "tollmon_queue_vehicles", "Vehicles delayed before the barriers", _APPROACH, reg
            ),
            queue_meters=TallyGauge(
                "tollmon_queue_meters", "Queue length in metres", _APPROACH, reg
            ),
            wait_seconds=TallyGauge(
                "tollmon_wait_seconds",
                "Mean delay of vehicles served in the last 30 s",
                _APPROACH,
                reg,
            ),
            congestion_level=TallyGauge(
                "tollmon_congestion_level", "0 free, 1 busy, 2 congested, 3 severe", _APPROACH, reg
            ),
            open_lanes=TallyGauge(
                "tollmon_open_lanes", "Lanes open on the approach", _APPROACH, reg
            ),
            spillback=TallyGauge(
                "tollmon_spillback",
                "1 while the queue stands past the approach detector (spillback), else 0",
                _APPROACH,
                reg,
            ),
            queue_corrections=TallyCounter(
                "tollmon_queue_corrections",
                "Vehicles the queue estimator put back into (kind=missed) or forgot from"
                " (kind=phantom) the approach detector's count",
                (*_APPROACH, "kind"),
                reg,
            ),
            # Per event (or per transaction): lock-free, see tollmon/tallies.py.
            arrivals=TallyCounter(
                "tollmon_arrivals", "Vehicles counted by approach detectors", _APPROACH, reg
            ),
            lane_transactions=TallyCounter(
                "tollmon_lane_transactions",
                "Vehicles leaving a lane barrier",
                ("plaza", "direction", "lane", "payment", "result"),
                reg,
            ),
            etc_failure_ratio=TallyGauge(
                "tollmon_etc_failure_ratio",
                "ETC failure ratio over the lane's recent ETC attempts",
                ("plaza", "direction", "lane"),
                reg,
            ),
            weighings=TallyCounter(
                "tollmon_weighings",
                "Vehicles weighed",
                ("plaza", "scale", "station", "quality"),
                reg,
            ),
            weight_pairs=counter(
                "tollmon_weight_pairs",
                "Entry/exit weighing pairs by outcome",
                ("exit_plaza", "outcome"),
            ),
            # Per scale and per plaza: series that grow with the network, hence tallies.
            scale_bias_ratio=TallyGauge(
                "tollmon_scale_bias_ratio",
                "Estimated scale bias",
                ("scale", "plaza", "station"),
                reg,
            ),
            scale_bias_stderr_ratio=TallyGauge(
                "tollmon_scale_bias_stderr_ratio",
                "Standard error of the scale bias",
                ("scale", "plaza", "station"),
                reg,
            ),
            alerts_firing=gauge(
                "tollmon_alerts_firing", "Alerts firing now", ("kind", "severity", "plaza")
            ),
            alerts=counter("tollmon_alerts", "Alerts raised", ("kind", "severity")),
            # Per-trip alerts never "fire" for long; the map and weighing board count them.
            overloads_admitted=counter(
                "tollmon_overloads_admitted",
                "Overloaded trucks admitted at entry (OVERLOAD_ADMITTED alerts)",
                ("plaza",),
            ),
            # Counted once per input event: see tollmon/tallies.py.
            events=TallyCounter("tollmon_events", "Valid input events", ("type",), reg),
            events_invalid=counter(
                "tollmon_events_invalid", "Input messages dead-lettered", ("reason",)
            ),
            events_late=TallyCounter(
                "tollmon_events_late", "Events later than the allowed lateness", ("type",), reg
            ),
            event_lag_seconds=BatchHistogram(
                "tollmon_event_lag_seconds", "Processing time minus event time", _LAG_BUCKETS, reg
            ),
            consumer_lag_messages=gauge(
                "tollmon_consumer_lag_messages",
                "Messages between the partition end and the input the worker has processed",
                ("topic", "partition"),
            ),
            plaza_info=TallyGauge(
                "tollmon_plaza_info",
                "Static plaza facts for the network map (value 1)",
                ("plaza", "name", "road", "lat", "lon"),
                reg,
            ),
        )


class _Collectors(Collector):
    """Several collectors as one, for `generate_latest`."""

    def __init__(self, collectors: list[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()
