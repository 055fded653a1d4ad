"""How an approach's configured detectors serve its queue estimator (SPEC §3, §4.1)."""

from __future__ import annotations

from tollmon.network import Detector
from tollmon.wiring import DetectorSetup, detector_setup


def detector(id_: str, distance_m: float, **options: object) -> Detector:
    return Detector.model_validate({"id": id_, "distance_m": distance_m, **options})


def test_an_approach_without_detectors_has_none() -> None:
    assert detector_setup([]) == DetectorSetup()


def test_a_lone_detector_counts() -> None:
    setup = detector_setup([detector("D1", 180, free_flow_s=14.0, approach_lanes=3)])

    assert (setup.distance_m, setup.free_flow_s, setup.queue_lanes) == (180, 14.0, 3)
    assert setup.upstream is None
    assert setup.unused_detector_ids == frozenset()


def test_the_nearest_counts_and_the_farthest_sees_the_queue_behind_it() -> None:
    setup = detector_setup(
        [
            detector("far", 600, free_flow_s=45.0),
            detector("near", 150, free_flow_s=12.0),
            detector("middle", 400),
        ]
    )

    assert (setup.distance_m, setup.free_flow_s) == (150, 12.0)
    assert setup.upstream is not None
    assert setup.upstream.detector_ids == frozenset({"far"})
    assert (setup.upstream.distance_m, setup.upstream.free_flow_s) == (600, 45.0)
    assert setup.unused_detector_ids == frozenset({"middle"})


def test_lane_detectors_at_one_distance_count_together() -> None:
    setup = detector_setup(
        [detector("L1", 180), detector("L2", 180, free_flow_s=14.0), detector("U", 500)]
    )

    assert setup.distance_m == 180
    assert setup.free_flow_s == 14.0
    assert setup.upstream is not None
    assert setup.upstream.detector_ids == frozenset({"U"})
    assert setup.unused_detector_ids == frozenset()
