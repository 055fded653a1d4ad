"""The detectors wired together for a whole network: one call per event.

The same object serves the Faust agents and the offline backtest, so both
produce the same estimates and alerts from the same events. Processing time
(`now_s`) is passed in; it only decides when a silent feed is idle and when a
plaza's data gap is raised, never what the detectors compute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from detectors.alerts import Alert
from detectors.approach import ApproachConfig
from detectors.data_gap import DataGapConfig, DataGapMonitor
from detectors.etc_health import EtcHealthConfig, EtcHealthMonitor, LaneKey
from detectors.ordering import EventTimeMerger
from detectors.overload import OverloadJoin, OverloadThresholds
from detectors.queue import BOUNDARY_MS, ApproachEstimator, QueueEstimate
from detectors.stall import LaneStallMonitor, StallConfig
from tollmon import checkpoint
from tollmon.events import (
    ApproachDetection,
    Event,
    LaneStatus,
    LaneTransaction,
    WeighMeasurement,
)
from tollmon.network import Network
from tollmon.thresholds import Thresholds
from tollmon.wiring import approach_configs, etc_health_config, stall_config


@dataclass
class Outputs:
    """What the detectors produced for one call, in event-time order per approach."""

    estimates: list[QueueEstimate] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    etc_ratios: list[tuple[LaneKey, float]] = field(default_factory=list)
    # Per approach and kind ("missed", "phantom"): vehicles the queue estimator put back
    # into or forgot from the detector's count.
    corrections: list[tuple[tuple[str, str, str], float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.estimates or self.alerts or self.etc_ratios or self.corrections)


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class PipelineConfig:
    """Ordering knobs: live runs want short holds, replays exact order."""

    idle_after_s: float = 10.0
    max_hold_s: float = 30.0
    feed_disorder_s: float = 0.0
    data_gap: DataGapConfig | None = None  # None: silence from the network's thresholds


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class PlazaSpec:
    """What a plaza's detectors are built from; a checkpoint made under another spec is dropped."""

    approaches: tuple[ApproachConfig, ...]
    overload: OverloadThresholds
    etc_health: EtcHealthConfig
    stall: StallConfig
    open_lanes: tuple[LaneKey, ...]


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class PlazaState:
    """Every detector state of one plaza: the unit a checkpoint saves and restores."""

    def __init__(self, spec: PlazaSpec, ordering: PipelineConfig) -> None:
        self.spec = spec
        self.estimators = {a.direction: ApproachEstimator(a) for a in spec.approaches}
        # A lower bound of every started estimator's next 5 s boundary: an event at or
        # before it closes none, so `advance` would produce nothing (None: none started).
        self.quiet_until_ms: int | None = None
        self.estimating = False  # some estimator has observed an event
        # Half-joined entry weighings and admissions of the plaza's trips.
        self.overload_join = OverloadJoin(spec.overload)
        self.etc = EtcHealthMonitor(spec.etc_health)
        self.stall = LaneStallMonitor(spec.stall, spec.open_lanes)
        expected: tuple[type, ...] = (LaneTransaction,)
        if any(a.has_detector for a in spec.approaches):
            expected = (ApproachDetection, LaneTransaction)
        self.merger = EventTimeMerger(
            ordering.idle_after_s, ordering.max_hold_s, expected, ordering.feed_disorder_s
        )


class Pipeline:
    """Queue, wait and lane-health detectors for every plaza of a network."""

    def __init__(self, network: Network, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        approaches: dict[str, list[ApproachConfig]] = {}
        for approach in approach_configs(network):
            approaches.setdefault(approach.plaza_id, []).append(approach)
        self._specs = {
            plaza.id: PlazaSpec(
                approaches=tuple(approaches[plaza.id]),
                overload=overload_thresholds(network.thresholds_for(plaza.id)),
                etc_health=etc_health_config(network.thresholds_for(plaza.id)),
                stall=stall_config(network.thresholds_for(plaza.id)),
                open_lanes=tuple(
                    (plaza.id, direction, lane.id)
                    for direction, approach in plaza.approaches()
                    for lane in approach.lanes
                ),
            )
            for plaza in network.plazas
            if plaza.id in approaches
        }
        self._plazas = {pid: PlazaState(spec, self.config) for pid, spec in self._specs.items()}
        # Plazas that weigh trucks at entry: elsewhere no weighing can ever join an admission.
        self._weighs_entries = frozenset(
            site.plaza_id for site in network.scale_sites if site.direction == "entry"
        )
        default = Thresholds()
        if network.defaults.thresholds is not None:
            default = default.overridden_by(network.defaults.thresholds)
        self._gaps = DataGapMonitor(
            self.config.data_gap or DataGapConfig(silence_s=default.data_gap_s)
        )

    def process(self, event: Event, now_s: float, out: Outputs | None = None) -> Outputs:
        """Take one valid event at processing time `now_s`; outputs are added to `out`."""
        if out is None:
            out = Outputs()
        out.alerts.extend(self._gaps.seen(event.plaza_id, now_s, event.ts))
        plaza = self._plazas.get(event.plaza_id)
        if plaza is not None:
            self._detect(plaza, plaza.merger.push(event, now_s), out)
        return out

    def tick(self, now_s: float) -> Outputs:
        """Periodic work on processing time: idle feeds released, data gaps raised."""
        out = Outputs()
        for plaza in self._plazas.values():
            if len(plaza.merger):
                self._detect(plaza, plaza.merger.release(now_s), out)
        out.alerts.extend(self._gaps.check(now_s))
        return out

    def finish(self) -> Outputs:
        """End of input (backtest): everything still buffered goes through."""
        out = Outputs()
        for plaza in self._plazas.values():
            self._detect(plaza, plaza.merger.flush(), out)
        return out

    def snapshot(self, plaza_ids: Iterable[str]) -> bytes:
        """The detector state of these plazas, for `restore` in another process."""
        plazas = self._plazas
        return checkpoint.dumps({pid: plazas[pid] for pid in plaza_ids if pid in plazas})

    def restore(self, snapshot: bytes, now_s: float) -> list[str]:
        """Take over the plazas of a `snapshot`; returns those restored.

        Processing-time clocks restart at `now_s`: a restored feed gets a fresh grace
        period and a restart by itself raises no DATA_GAP. A plaza whose configuration
        changed since the snapshot starts from empty detectors instead.
        """
        plazas = checkpoint.loads(snapshot, PlazaState)
        restored = []
        for plaza_id, plaza in plazas.items():
            if self._specs.get(plaza_id) != plaza.spec:
                continue
            try:
                plaza.merger.rearm(now_s)
            except Exception as exc:  # state objects that do not fit this code
                raise checkpoint.CheckpointError(f"plaza {plaza_id}: {exc!r}") from exc
            self._plazas[plaza_id] = plaza
            restored.append(plaza_id)
        self.forget_feeds(restored)
        return restored

    def drop(self, plaza_ids: Iterable[str]) -> None:
        """These plazas moved to another worker: back to empty detectors, no data-gap watch."""
        plaza_ids = list(plaza_ids)
        for plaza_id in plaza_ids:
            spec = self._specs.get(plaza_id)
            if spec is not None:
                self._plazas[plaza_id] = PlazaState(spec, self.config)
        self.forget_feeds(plaza_ids)

    def forget_feeds(self, plaza_ids: Iterable[str]) -> None:
        """These plazas' partitions moved to another worker: their silence here is no gap."""
        for plaza_id in plaza_ids:
            self._gaps.forget(plaza_id)

    def late_events(self) -> int:
        """Events that arrived after their time had been released (fed late)."""
        return sum(plaza.merger.late_events for plaza in self._plazas.values())

    def _detect(self, plaza: PlazaState, events: Iterable[Event], out: Outputs) -> None:
        for event in events:
            if isinstance(event, (ApproachDetection, LaneTransaction, LaneStatus)):
                estimator = plaza.estimators.get(event.direction)
                if estimator is not None:
                    estimator.observe(event)
                    plaza.estimating = True
            if isinstance(event, LaneTransaction):
                out.alerts.extend(plaza.etc.on_transaction(event))
                out.alerts.extend(plaza.stall.on_transaction(event))
                ratio = plaza.etc.failure_ratio(event.plaza_id, event.direction, event.lane_id)
                if ratio is not None:
                    out.etc_ratios.append(((event.plaza_id, event.direction, event.lane_id), ratio))
            elif isinstance(event, LaneStatus):
                out.alerts.extend(plaza.stall.on_lane_status(event))
            if isinstance(event, (WeighMeasurement, LaneTransaction)):
                self._join_overload(plaza, event, out)
            quiet_until = plaza.quiet_until_ms
            if quiet_until is None or event.ts > quiet_until:
                self._advance(plaza, event.ts, out)
            if plaza.estimating:
                # Every started estimator's boundary is now at or past this one.
                plaza.quiet_until_ms = -(-event.ts // BOUNDARY_MS) * BOUNDARY_MS

    def _advance(self, plaza: PlazaState, ts_ms: int, out: Outputs) -> None:
        # Every approach of the plaza moves on with the plaza's event time, so a
        # quiet approach still reports its (empty) queue every 5 s. Estimators only
        # emit once an event is past one of their boundaries, which `_detect` checks
        # first: most events cross none.
        for estimator in plaza.estimators.values():
            emitted = estimator.advance(ts_ms)
            out.alerts.extend(emitted.alerts)
            if emitted.estimates:
                config = estimator.config
                for kind, vehicles in estimator.take_corrections():
                    out.corrections.append(((config.plaza_id, config.direction, kind), vehicles))
            for estimate in emitted.estimates:
                out.estimates.append(estimate)
                # A lane idle while its approach merely trickles is normal (an MTC
                # lane when only ETC cars come); a stall matters once it is busy.
                waiting = estimate.queue_veh if estimate.level >= 1 else 0.0
                out.alerts.extend(
                    plaza.stall.set_queue(
                        estimate.plaza_id, estimate.direction, waiting, estimate.ts
                    )
                )

    def _join_overload(
        self, plaza: PlazaState, event: WeighMeasurement | LaneTransaction, out: Outputs
    ) -> None:
        # Cars are never weighed, and nor is anything at a plaza without an entry scale:
        # holding their admissions would only fill memory.
        if isinstance(event, LaneTransaction) and (
            event.direction != "entry"
            or event.vehicle_class[0] == "K"
            or event.plaza_id not in self._weighs_entries
        ):
            return
        if isinstance(event, WeighMeasurement) and event.station != "entry":
            return
        plaza.overload_join.expire(event.ts)
        alert = plaza.overload_join.observe(event)
        if alert is not None:
            out.alerts.append(alert)


def overload_thresholds(t: Thresholds) -> OverloadThresholds:
    return OverloadThresholds(
        overload_limits_kg=t.overload_limits_kg,
        overload_tolerance_ratio=t.overload_tolerance_ratio,
    )
