"""Translate the network configuration into the detectors' own small configs."""

from __future__ import annotations

from detectors.congestion import CongestionThresholds
from detectors.etc_health import EtcHealthConfig
from detectors.queue import ApproachConfig, VehicleLengths
from detectors.stall import StallConfig
from tollmon.network import Network
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
            detector = approach.detectors[0] if approach.detectors else None
            configs.append(
                ApproachConfig(
                    plaza_id=plaza.id,
                    direction=direction,
                    lanes=tuple((lane.id, lane.type) for lane in approach.lanes),
                    distance_m=detector.distance_m if detector else None,
                    free_flow_s=detector.free_flow_s if detector else None,
                    queue_lanes=detector.approach_lanes if detector else None,
                    vehicle_lengths=vehicle_lengths,
                    thresholds=thresholds,
                )
            )
    return configs
