"""Translate the network configuration into the detectors' own small configs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeVar

from detectors.approach import UpstreamDetector
from detectors.congestion import CongestionThresholds
from detectors.etc_health import EtcHealthConfig
from detectors.queue import ApproachConfig, VehicleLengths
from detectors.stall import StallConfig
from tollmon.network import Detector, Network
from tollmon.thresholds import Thresholds


def congestion_thresholds(t: Thresholds) -> CongestionThresholds:
    return CongestionThresholds(
        busy_per_lane=t.busy_per_lane,
        congested_per_lane=t.congested_per_lane,
        severe_per_lane=t.severe_per_lane,
        congested_wait_s=t.congested_wait_s,
        severe_wait_s=t.severe_wait_s,
        congestion_raise_hold_s=t.congestion_raise_hold_s,
        congestion_resolve_hold_s=t.congestion_resolve_hold_s,
        target_utilisation=t.target_utilisation,
    )


def etc_health_config(t: Thresholds) -> EtcHealthConfig:
    return EtcHealthConfig(
        window_attempts=t.etc_window_attempts,
        window_s=t.etc_window_s,
        min_attempts=t.etc_min_attempts,
        min_ratio=t.etc_failure_ratio,
        others_multiple=t.etc_failure_factor,
        p_value=t.etc_p_value,
    )


def stall_config(t: Thresholds) -> StallConfig:
    return StallConfig(silence_s=t.lane_stall_s)


class DetectorSetup(NamedTuple):
    """How an approach's detectors serve its estimator (SPEC §4.1).

    The nearest cross-section counts: its detectors' detections add up (several ids at one
    distance are lane detectors of one cross-section). The farthest, if at another distance,
    measures the queue that spills back past the nearest. Any between are not used.
    """

    distance_m: float | None = None
    free_flow_s: float | None = None
    queue_lanes: int | None = None
    upstream: UpstreamDetector | None = None
    unused_detector_ids: frozenset[str] = frozenset()


def detector_setup(detectors: Sequence[Detector]) -> DetectorSetup:
    """The counting detector, the one farther upstream and those unused, by distance."""
    if not detectors:
        return DetectorSetup()
    near_m = min(d.distance_m for d in detectors)
    far_m = max(d.distance_m for d in detectors)
    near = [d for d in detectors if d.distance_m == near_m]
    far = [d for d in detectors if d.distance_m == far_m] if far_m > near_m else []
    upstream = None
    if far:
        upstream = UpstreamDetector(
            detector_ids=frozenset(d.id for d in far),
            distance_m=far_m,
            free_flow_s=_first_set(d.free_flow_s for d in far),
            queue_lanes=_first_set(d.approach_lanes for d in far),
        )
    return DetectorSetup(
        distance_m=near_m,
        free_flow_s=_first_set(d.free_flow_s for d in near),
        queue_lanes=_first_set(d.approach_lanes for d in near),
        upstream=upstream,
        unused_detector_ids=frozenset(
            d.id for d in detectors if d.distance_m not in (near_m, far_m)
        ),
    )


_T = TypeVar("_T")


def _first_set(values: Iterable[_T | None]) -> _T | None:
    return next((v for v in values if v is not None), None)


def approach_configs(network: Network) -> list[ApproachConfig]:
    """One estimator config per configured plaza direction."""
    lengths = network.defaults.vehicle_length_m
    vehicle_lengths = VehicleLengths.from_letters(
        {"K": lengths.length_m("K1"), "H": lengths.length_m("H1"), "Z": lengths.length_m("Z1")}
    )
    configs = []
    for plaza in network.plazas:
        thresholds = congestion_thresholds(network.thresholds_for(plaza.id))
        for direction, approach in plaza.approaches():
            setup = detector_setup(approach.detectors)
            configs.append(
                ApproachConfig(
                    plaza_id=plaza.id,
                    direction=direction,
                    lanes=tuple((lane.id, lane.type) for lane in approach.lanes),
                    distance_m=setup.distance_m,
                    free_flow_s=setup.free_flow_s,
                    queue_lanes=setup.queue_lanes,
                    upstream=setup.upstream,
                    unused_detector_ids=setup.unused_detector_ids,
                    vehicle_lengths=vehicle_lengths,
                    thresholds=thresholds,
                )
            )
    return configs
