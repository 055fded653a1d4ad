"""A seeded traffic generator: approach detections, lane transactions and weighings.

Vehicles arrive at each approach's detector as a Poisson stream, reach the
barriers after the free-flow time, join the lane that frees first among those
their payment can use, and leave after an ETC (≈3 s) or manual (≈14 s) service.
A failed ETC transaction is finished manually, slowly. Trucks are weighed at the
approach's scale. Events come out in event-time order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tollmon.events import ApproachDetection, Event, LaneTransaction, WeighMeasurement
from tollmon.network import Approach, Detector, Lane, Network

ETC_SERVICE_S = 3.0
MTC_SERVICE_S = 14.0
ETC_FAIL_SERVICE_S = 25.0
DEFAULT_FREE_FLOW_S = 12.0
# GB 1589 gross limits by axle count, used to draw realistic truck weights.
_LIMIT_KG = {2: 18_000, 3: 25_000, 4: 31_000, 5: 43_000, 6: 49_000}


@dataclass(frozen=True)
class Surge:
    """Demand at a plaza multiplied by `factor` between two offsets from the start."""

    plaza_id: str
    factor: float
    start_s: float = 0.0
    end_s: float = math.inf
    direction: str | None = None  # None: both directions

    def applies(self, plaza_id: str, direction: str) -> bool:
        return plaza_id == self.plaza_id and self.direction in (None, direction)


@dataclass(frozen=True)
class DetectorFault:
    """An approach detector at a plaza that misses `missed_ratio` of the vehicles and counts
    `double_ratio` of them twice (a lane changer over two loops: a second count within a
    second, without a plate)."""

    plaza_id: str
    missed_ratio: float = 0.0
    double_ratio: float = 0.0
    direction: str | None = None  # None: both directions

    def applies(self, plaza_id: str, direction: str) -> bool:
        return plaza_id == self.plaza_id and self.direction in (None, direction)


@dataclass(frozen=True)
class TrafficProfile:
    """Demand and behaviour knobs; rates are vehicles per hour per approach."""

    vehicles_per_hour: float = 600.0
    etc_share: float = 0.75
    truck_share: float = 0.25
    etc_failure_rate: float = 0.02
    surges: tuple[Surge, ...] = ()
    etc_failure_by_lane: dict[tuple[str, str, str], float] = field(default_factory=dict)
    rate_by_plaza: dict[str, float] = field(default_factory=dict)  # overrides the base rate
    detector_faults: tuple[DetectorFault, ...] = ()


def generate(
    network: Network,
    start_ms: int,
    duration_s: float,
    profile: TrafficProfile,
    seed: int = 0,
    plazas: list[str] | None = None,
) -> Iterator[Event]:
    """All events of the chosen plazas over `duration_s`, in event-time order."""
    rng = np.random.default_rng(seed)
    streams: list[Iterator[tuple[int, int, int, Event]]] = []
    for plaza in network.plazas:
        if plazas is not None and plaza.id not in plazas:
            continue
        for direction, approach in plaza.approaches():
            sim = _ApproachSim(plaza.id, direction, approach, profile, rng, len(streams))
            streams.append(sim.run(start_ms, duration_s))
    for *_, event in heapq.merge(*streams, key=lambda item: item[:3]):
        yield event


class _ApproachSim:
    def __init__(
        self,
        plaza_id: str,
        direction: str,
        approach: Approach,
        profile: TrafficProfile,
        rng: np.random.Generator,
        stream_no: int,
    ) -> None:
        self.plaza_id = plaza_id
        self.direction = direction
        self.approach = approach
        self.profile = profile
        self.rng = rng
        self.stream_no = stream_no
        self.serial = 0
        self.run_tag = ""
        self.pushed = 0  # tie-breaker: events never compare with each other
        self.lane_free_at = {lane.id: 0.0 for lane in approach.lanes}
        # The nearest detector counts; any farther up see each vehicle earlier, at free flow.
        by_distance = sorted(approach.detectors, key=lambda d: d.distance_m)
        detector = by_distance[0] if by_distance else None
        self.detector = detector
        self.fault = next(
            (f for f in profile.detector_faults if f.applies(plaza_id, direction)), None
        )
        self.free_flow_s = (
            detector.free_flow_s
            if detector is not None and detector.free_flow_s is not None
            else DEFAULT_FREE_FLOW_S
        )
        # (detector id, seconds before the nearest one) of each detector farther upstream.
        self.upstream = [
            (d.id, _free_flow_s(d, detector, self.free_flow_s) - self.free_flow_s)
            for d in by_distance[1:]
            if detector is not None and d.distance_m > detector.distance_m
        ]
        # A far detector reached no sooner (a free_flow_s set short of the nearest one's) delays
        # nothing: its events wait in the heap like any later one.
        self.lead_ms = int(max([0.0, *(lead for _, lead in self.upstream)]) * 1000)

    def _next_id(self, kind: str) -> str:
        self.serial += 1
        # The run tag keeps ids unique across runs, so a worker's dedup never
        # mistakes a new run's vehicles for duplicates of an earlier one's.
        return f"{kind}{self.serial}.{self.plaza_id}.{self.direction[:2]}.{self.run_tag}"

    def run(self, start_ms: int, duration_s: float) -> Iterator[tuple[int, int, int, Event]]:
        self.run_tag = np.base_repr(start_ms, 36).lower()
        profile = self.profile
        base = profile.rate_by_plaza.get(self.plaza_id, profile.vehicles_per_hour) / 3600.0
        surges = [s for s in profile.surges if s.applies(self.plaza_id, self.direction)]
        peak = base * max([1.0, *(s.factor for s in surges)])
        pending: list[tuple[int, int, int, Event]] = []
        t = 0.0
        while True:
            # Time-varying demand by thinning a Poisson stream at the peak rate.
            t += float(self.rng.exponential(1.0 / peak))
            if t >= duration_s:
                break
            rate = base * math.prod(s.factor for s in surges if s.start_s <= t < s.end_s)
            if self.rng.random() * peak > rate:
                continue
            for ts, stream_no, event in self._vehicle(start_ms, t):
                self.pushed += 1
                heapq.heappush(pending, (ts, stream_no, self.pushed, event))
            # Everything before the current detector time (less the lead of any detector
            # farther upstream) is final: release it.
            release_before = start_ms + int(t * 1000) - self.lead_ms
            while pending and pending[0][0] <= release_before:
                yield heapq.heappop(pending)
        while pending:
            yield heapq.heappop(pending)

    def _detections(self, ts: int, detector_id: str, plate: str) -> list[tuple[int, int, Event]]:
        """The vehicle's crossing of the detector: none if missed, two if counted twice."""
        missed = doubled = False
        fault = self.fault
        if fault is not None:
            u = float(self.rng.random())
            missed = u < fault.missed_ratio
            doubled = u >= 1.0 - fault.double_ratio
        out: list[tuple[int, int, Event]] = []
        if not missed:
            out.append((ts, self.stream_no, self._detection(ts, detector_id, plate)))
        if doubled:
            twice = ts + int(self.rng.integers(200, 1_500))
            out.append((twice, self.stream_no, self._detection(twice, detector_id, None)))
        return out

    def _detection(self, ts: int, detector_id: str, plate: str | None) -> ApproachDetection:
        return ApproachDetection(
            event_id=self._next_id("det"),
            ts=ts,
            plaza_id=self.plaza_id,
            direction=self.direction,  # type: ignore[arg-type]  # entry/exit by construction
            detector_id=detector_id,
            plate_hash=plate,
        )

    def _vehicle(self, start_ms: int, t: float) -> list[tuple[int, int, Event]]:
        rng = self.rng
        is_truck = rng.random() < self.profile.truck_share
        vclass = f"H{rng.integers(1, 7)}" if is_truck else f"K{rng.integers(1, 3)}"
        axles = min(6, int(vclass[1]) + 1) if is_truck else 2
        uses_etc = rng.random() < self.profile.etc_share
        plate = f"{rng.integers(0, 2**63):016x}"
        pass_id = self._next_id("trip")
        lane = self._choose_lane(uses_etc, t + self.free_flow_s)
        fail_p = self.profile.etc_failure_by_lane.get(
            (self.plaza_id, self.direction, lane.id), self.profile.etc_failure_rate
        )
        failed = uses_etc and rng.random() < fail_p
        service = _service_s(rng, uses_etc, failed)
        start = max(t + self.free_flow_s, self.lane_free_at[lane.id])
        self.lane_free_at[lane.id] = start + service
        out: list[tuple[int, int, Event]] = []
        if self.detector is not None:
            out += self._detections(start_ms + int(t * 1000), self.detector.id, plate)
            for detector_id, lead_s in self.upstream:
                # A counting loop: no plate, and no fault (those are the nearest one's).
                ts = start_ms + int((t - lead_s) * 1000)
                out.append((ts, self.stream_no, self._detection(ts, detector_id, None)))
        leave_ms = start_ms + int((start + service) * 1000)
        out.append(
            (
                leave_ms,
                self.stream_no,
                LaneTransaction(
                    event_id=self._next_id("tx"),
                    ts=leave_ms,
                    plaza_id=self.plaza_id,
                    lane_id=lane.id,
                    direction=self.direction,  # type: ignore[arg-type]  # entry/exit by construction
                    payment="ETC" if uses_etc else "MTC",
                    result="ETC_FAIL" if failed else "OK",
                    vehicle_class=vclass,
                    axles=axles,
                    pass_id=pass_id,
                    plate_hash=plate,
                    service_ms=int(service * 1000),
                ),
            )
        )
        scale = next((s for s in self.approach.scales if s.lane == lane.id), None)
        if is_truck and scale is not None:
            limit = _LIMIT_KG[min(axles, 6)]
            gross = int(np.clip(rng.normal(0.7, 0.15) * limit, 3_000, 150_000))
            weigh_ms = start_ms + int(start * 1000)
            out.append(
                (
                    weigh_ms,
                    self.stream_no,
                    WeighMeasurement(
                        event_id=self._next_id("wm"),
                        ts=weigh_ms,
                        plaza_id=self.plaza_id,
                        scale_id=scale.id,
                        station=self.direction,  # type: ignore[arg-type]  # entry/exit by construction
                        lane_id=lane.id,
                        pass_id=pass_id,
                        plate_hash=plate,
                        axles=axles,
                        gross_kg=gross,
                    ),
                )
            )
        return out

    def _choose_lane(self, uses_etc: bool, at_s: float) -> Lane:
        usable = [
            lane
            for lane in self.approach.lanes
            if lane.type == "MIXED" or (lane.type == "ETC") == uses_etc
        ] or list(self.approach.lanes)
        return min(usable, key=lambda lane: (max(self.lane_free_at[lane.id], at_s), lane.id))


def _service_s(rng: np.random.Generator, uses_etc: bool, failed: bool) -> float:
    mean = ETC_FAIL_SERVICE_S if failed else ETC_SERVICE_S if uses_etc else MTC_SERVICE_S
    # Service times are right-skewed; a lognormal with CV ≈ 0.3 fits lane observations.
    sigma = 0.3
    return float(rng.lognormal(math.log(mean) - sigma**2 / 2, sigma))


def _free_flow_s(detector: Detector, nearest: Detector | None, nearest_s: float) -> float:
    """A detector's free-flow time to the barriers: as configured, else in proportion to the
    nearest one's by distance."""
    if detector.free_flow_s is not None:
        return detector.free_flow_s
    if nearest is None:
        return nearest_s
    return nearest_s * detector.distance_m / nearest.distance_m
