"""Cumulative curves: A(t) and D(t) of the input-output model, bounded in time and memory."""

from __future__ import annotations

import tracemalloc

from detectors.curves import CumulativeCurve


def test_counts_are_read_at_any_time_and_times_of_any_count() -> None:
    curve = CumulativeCurve(horizon_s=3600)
    for ts in (1_000, 2_000, 2_000, 5_000):
        curve.add(ts)
    assert [curve.count_at(t) for t in (0, 1_000, 1_999, 2_000, 9_999)] == [0, 1, 1, 3, 4]
    assert [curve.time_of(k) for k in (1, 2, 3, 4, 5)] == [1_000, 2_000, 2_000, 5_000, None]


def test_a_late_point_is_kept_at_the_curves_last_time() -> None:
    curve = CumulativeCurve(horizon_s=3600)
    curve.add(5_000)
    curve.add(4_000)
    assert curve.count_at(4_999) == 0
    assert curve.count_at(5_000) == 2


def test_points_older_than_the_horizon_are_forgotten_but_still_counted() -> None:
    curve = CumulativeCurve(horizon_s=60)
    for second in range(600):
        curve.add(second * 1_000)
        curve.prune(second * 1_000)
    assert len(curve) <= 61
    assert curve.count_at(0) == 539  # everything before the horizon, as one step
    assert curve.count_at(599_000) == 600


def test_two_hours_of_a_busy_approach_take_bounded_memory() -> None:
    # Four points a second for two hours with a one-hour horizon: the curve keeps at most
    # an hour of points, and stores each (time, count) in 16 bytes plus list slack.
    tracemalloc.start()
    try:
        curve = CumulativeCurve(horizon_s=3600)
        for k in range(4 * 7200):
            curve.add(1_795_000_000_000 + k * 250)
            curve.prune(1_795_000_000_000 + k * 250)
        allocated = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(curve) <= 4 * 3600 + 1
    # Storage is compacted once an eighth of it is forgotten.
    assert allocated < (4 * 3600) * 16 * 1.3
