"""SUMO vehicle records → contract events and network config → the queue estimator, as streamed."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np

from detectors.alerts import Alert
from detectors.congestion import CongestionThresholds
from detectors.queue import ApproachConfig, ApproachEstimator, QueueEstimate, VehicleLengths
from tollmon.events import ApproachDetection, Direction, LaneTransaction
from tollmon.network import Network, parse_network
from tollmon.wiring import detector_setup
from validation.sumo.scenario import Layout
from validation.sumo.simulate import VehicleRecord

PLAZA_ID = "SIM-P01"
DIRECTION: Direction = "entry"
DETECTOR_ID = "SIM-P01-EN-D1"
UPSTREAM_DETECTOR_ID = "SIM-P01-EN-D2"
# Simulation second 0 is 08:00 local time (UTC+8) on a Monday morning.
T0_MS = int(datetime(2026, 3, 2, 0, 0, tzinfo=UTC).timestamp() * 1000)
# Plates are hashed as the adapter would; this key only has to be fixed, not secret.
_PLATE_KEY = b"tollmon-sumo-validation"

QueueEvent = ApproachDetection | LaneTransaction


def ms(sim_s: float) -> int:
    """Epoch milliseconds of a simulation time."""
    return T0_MS + round(sim_s * 1000)


def sim_seconds(ts_ms: int) -> float:
    """Simulation seconds of an epoch-millisecond time."""
    return (ts_ms - T0_MS) / 1000.0


def plate_hash(vehicle_id: str) -> str:
    """A keyed hash of the simulated plate, like the lane-record adapter's."""
    return hmac.new(_PLATE_KEY, vehicle_id.encode(), hashlib.sha256).hexdigest()[:32]


def network_dict(
    layout: Layout,
    free_flow_s: float | None,
    with_detector: bool = True,
    upstream_free_flow_s: float | None = None,
    with_upstream: bool = False,
) -> dict[str, Any]:
    """The plaza as a network config (SPEC §3): its lanes, optionally the approach detector,
    and with `with_upstream` the second loop farther upstream (surveyed where its free-flow
    time is given)."""
    detectors = [
        _detector(DETECTOR_ID, layout.detector_distance_m, layout.approach_lanes, free_flow_s)
    ]
    if with_upstream:
        detectors.append(
            _detector(
                UPSTREAM_DETECTOR_ID,
                layout.upstream_detector_m,
                layout.approach_lanes,
                upstream_free_flow_s,
            )
        )
    return {
        "defaults": {"vehicle_length_m": {"K": 7.5, "H": 15.0, "Z": 12.0}},
        "plazas": [
            {
                "id": PLAZA_ID,
                "name": "SUMO validation plaza",
                "road": "G30",
                "lat": 43.83,
                "lon": 87.69,
                "directions": {
                    DIRECTION: {
                        "lanes": [{"id": b.lane_id, "type": b.kind} for b in layout.booths],
                        "detectors": detectors if with_detector else [],
                    }
                },
            }
        ],
    }


def _detector(
    detector_id: str, distance_m: float, approach_lanes: int, free_flow_s: float | None
) -> dict[str, Any]:
    detector: dict[str, Any] = {
        "id": detector_id,
        "distance_m": distance_m,
        "approach_lanes": approach_lanes,
    }
    if free_flow_s is not None:
        detector["free_flow_s"] = round(free_flow_s, 1)
    return detector


def approach_config(network: Network, plaza_id: str = PLAZA_ID) -> ApproachConfig:
    """The estimator's view of the plaza's entry approach, from the validated network."""
    plaza = network.plaza(plaza_id)
    approach = plaza.approach(DIRECTION) if plaza is not None else None
    if plaza is None or approach is None:
        raise KeyError(f"{plaza_id}/{DIRECTION} is not in the network")
    thresholds = network.thresholds_for(plaza_id)
    setup = detector_setup(approach.detectors)
    lengths = network.defaults.vehicle_length_m
    return ApproachConfig(
        plaza_id=plaza_id,
        direction=DIRECTION,
        lanes=tuple((lane.id, lane.type) for lane in approach.lanes),
        distance_m=setup.distance_m,
        free_flow_s=setup.free_flow_s,
        queue_lanes=setup.queue_lanes,
        upstream=setup.upstream,
        unused_detector_ids=setup.unused_detector_ids,
        vehicle_lengths=VehicleLengths.from_letters({"K": lengths.K, "H": lengths.H}),
        thresholds=CongestionThresholds(
            **{f.name: getattr(thresholds, f.name) for f in fields(CongestionThresholds)}
        ),
    )


@dataclass(frozen=True, slots=True)
class DetectorFaults:
    """How the approach detector miscounts: vehicles it misses and vehicles it counts twice
    (a second loop triggered by a lane change, with no plate read)."""

    missed_ratio: float = 0.0
    double_ratio: float = 0.0


NO_FAULTS = DetectorFaults()


def to_events(
    records: Sequence[VehicleRecord],
    seed: int,
    plate_read_ratio: float,
    with_detector: bool,
    faults: DetectorFaults = NO_FAULTS,
    with_upstream: bool = False,
    upstream_faults: DetectorFaults = NO_FAULTS,
) -> list[QueueEvent]:
    """One lane_transaction per served vehicle and one approach_detection per crossing of D1,
    less the missed ones and plus the double counts of `faults`; with `with_upstream`, one
    per crossing of D2 too (a counting loop: no plates), miscounting by `upstream_faults`."""
    rng = np.random.default_rng(seed + 1)
    faulty = np.random.default_rng(seed + 2)
    faulty_upstream = np.random.default_rng(seed + 3)
    events: list[QueueEvent] = []
    for r in records:
        trip = r.trip
        plate = plate_hash(trip.vehicle_id)
        if with_detector:
            read = rng.random() < plate_read_ratio
            fault = faulty.random()
            if fault >= faults.missed_ratio:
                events.append(
                    ApproachDetection(
                        event_id=f"det-{seed}-{trip.vehicle_id}",
                        ts=ms(r.detector_s),
                        plaza_id=PLAZA_ID,
                        direction=DIRECTION,
                        detector_id=DETECTOR_ID,
                        plate_hash=plate if read else None,
                    )
                )
            if fault >= 1.0 - faults.double_ratio:
                events.append(
                    ApproachDetection(
                        event_id=f"det-{seed}-{trip.vehicle_id}-twice",
                        ts=ms(r.detector_s + faulty.uniform(0.2, 1.5)),
                        plaza_id=PLAZA_ID,
                        direction=DIRECTION,
                        detector_id=DETECTOR_ID,
                    )
                )
        if with_upstream:
            fault = faulty_upstream.random()
            crossings = [r.upstream_s] if fault >= upstream_faults.missed_ratio else []
            if fault >= 1.0 - upstream_faults.double_ratio:
                crossings.append(r.upstream_s + faulty_upstream.uniform(0.2, 1.5))
            events += [
                ApproachDetection(
                    event_id=f"up-{seed}-{trip.vehicle_id}-{n}",
                    ts=ms(crossed_s),
                    plaza_id=PLAZA_ID,
                    direction=DIRECTION,
                    detector_id=UPSTREAM_DETECTOR_ID,
                )
                for n, crossed_s in enumerate(crossings)
            ]
        events.append(
            LaneTransaction(
                event_id=f"tx-{seed}-{trip.vehicle_id}",
                ts=ms(r.departure_s),
                plaza_id=PLAZA_ID,
                lane_id=trip.booth.lane_id,
                direction=DIRECTION,
                payment=trip.payment,
                result="ETC_FAIL" if trip.failed else "OK",
                vehicle_class=trip.vtype.vehicle_class,
                axles=trip.vtype.axles,
                pass_id=f"SIM{seed}-{trip.vehicle_id}",
                plate_hash=plate,
                service_ms=round(r.service_s * 1000),
            )
        )
    # Event-time order, as the stream's reorder buffer delivers it; ties keep a fixed order.
    events.sort(key=lambda e: (e.ts, e.event_id))
    return events


@dataclass(frozen=True, slots=True)
class EstimatorRun:
    """Everything the estimator emitted over one replay."""

    estimates: list[QueueEstimate]
    alerts: list[Alert]
    tau_s: float


def run_estimator(
    config: ApproachConfig, events: Iterable[QueueEvent], end_ms: int
) -> EstimatorRun:
    """Feed events one by one and collect outputs as the streaming agent does."""
    estimator = ApproachEstimator(config)
    estimates: list[QueueEstimate] = []
    alerts: list[Alert] = []
    for event in events:
        estimator.observe(event)
        out = estimator.advance(event.ts)
        estimates += out.estimates
        alerts += out.alerts
    out = estimator.advance(end_ms)
    estimates += out.estimates
    alerts += out.alerts
    return EstimatorRun(estimates, alerts, estimator.tau_s)


def build_network(
    layout: Layout,
    free_flow_s: float | None,
    with_detector: bool = True,
    upstream_free_flow_s: float | None = None,
    with_upstream: bool = False,
) -> Network:
    """The validated network config of the simulated plaza."""
    config = network_dict(layout, free_flow_s, with_detector, upstream_free_flow_s, with_upstream)
    return parse_network(config, "sumo-validation")
