"""The lanes of an approach: which are open, and how many of the vehicles at the barriers
are in service rather than waiting."""

from __future__ import annotations

from detectors.approach import LaneType, ServiceTimes
from detectors.lanes import MAX_LANES, LanePool

STEP_MS = 5_000
MIXED_4: dict[str, LaneType] = {"01": "ETC", "02": "ETC", "03": "MTC", "04": "MTC"}


def pool(lanes: dict[str, LaneType] | None = None) -> LanePool:
    return LanePool((lanes or MIXED_4).items(), ServiceTimes(), STEP_MS)


def serve(lanes: LanePool, lane: str, times_s: list[float], service_s: float) -> None:
    """Departures of one lane at `times_s`, each with a reported service of `service_s`, and
    each vehicle queued behind the one before."""
    for t in times_s:
        lanes.windows[lane].add(round(t * 1000), service_s, waited=True, measured=True)


def test_a_lane_missing_from_the_network_counts_as_an_open_mixed_lane() -> None:
    lanes = pool()
    assert lanes.known("09")
    assert lanes.types["09"] == "MIXED"
    assert lanes.open_count == 5


def test_unknown_lanes_stop_being_added_at_the_limit() -> None:
    lanes = pool({f"{i:02d}": "ETC" for i in range(MAX_LANES)})
    assert not lanes.known("XX")
    assert lanes.open_count == MAX_LANES


def test_closing_and_reopening_a_lane_changes_the_open_count() -> None:
    lanes = pool()
    lanes.set_open("03", False)
    assert lanes.open_count == 3
    lanes.set_open("03", False)
    assert lanes.open_count == 3
    lanes.set_open("03", True)
    assert lanes.open_count == 4


def test_fewer_vehicles_than_open_lanes_are_all_in_service() -> None:
    assert pool().in_service(600_000, 3.0, first_ms=0) == 3.0


def test_a_queue_at_one_lane_type_keeps_every_lane_of_that_type_busy() -> None:
    lanes = pool()
    # Both manual lanes serve queued vehicles back to back, 14 s each; ETC lanes are silent.
    for lane in ("03", "04"):
        serve(lanes, lane, [500.0 + 14.0 * k for k in range(8)], 14.0)
    b = 500_000 + 14_000 * 7 + 1_000
    # 10 vehicles at the barriers: the two manual lanes serve, the idle ETC lanes add what
    # their (empty) recent history says they serve, nothing.
    assert lanes.in_service(b, 10.0, first_ms=0) == 2.0


def test_a_closed_lane_serves_nobody() -> None:
    lanes = pool()
    for lane in ("03", "04"):
        serve(lanes, lane, [500.0 + 14.0 * k for k in range(8)], 14.0)
    lanes.set_open("04", False)
    b = 500_000 + 14_000 * 7 + 1_000
    assert lanes.in_service(b, 10.0, first_ms=0) == 1.0


def test_lanes_silent_while_vehicles_outnumber_them_are_idle_not_serving() -> None:
    lanes = pool()
    # Nobody queued behind anybody; 10 vehicles at the barriers since 600 s, and by 700 s no
    # lane has served for far longer than two of its service times.
    assert lanes.in_service(600_000, 10.0, first_ms=0) == 4.0
    assert lanes.in_service(700_000, 10.0, first_ms=0) == 1.0


def test_the_queue_stands_in_the_road_lanes_of_the_most_delayed_lane_type() -> None:
    lanes = pool()
    # All the delay is at the manual lanes, half of the open lanes: the queue stands in
    # half of the 4 road lanes.
    assert lanes.standing_lanes(4, {"ETC": 0.0, "MTC": 60.0, "MIXED": 0.0}, 60.0) == 2.0
    # Without a road lane count the queue spreads over the open lanes.
    assert lanes.standing_lanes(None, {"ETC": 0.0, "MTC": 60.0, "MIXED": 0.0}, 60.0) == 4.0
