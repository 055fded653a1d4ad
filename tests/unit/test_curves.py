"""Cumulative curves: A(t) and D(t) of the input-output model, bounded in time and memory."""

from __future__ import annotations

import tracemalloc
from bisect import bisect_right

from hypothesis import given
from hypothesis import strategies as st

from detectors.curves import CumulativeCurve

DAY_MS = 86_400_000


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
    # Four units a second for two hours with a one-hour horizon: the curve keeps at most
    # an hour of units, and stores each in 4 bytes plus slack.
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
    assert allocated < (4 * 3600) * 4 * 1.3


def test_a_batch_counts_each_of_its_units() -> None:
    curve = CumulativeCurve(horizon_s=3600)
    curve.add(1_000, count=3)
    curve.add(2_000)
    assert curve.total == 4
    assert [curve.time_of(k) for k in (1, 3, 4)] == [1_000, 1_000, 2_000]
    assert curve.count_at(1_500) == 3


def test_a_curve_fed_for_weeks_keeps_exact_times() -> None:
    # Times are 32-bit offsets from an origin, which moves when they would overflow.
    curve = CumulativeCurve(horizon_s=3600)
    start = 1_795_000_000_000
    for k in range(60 * 24):  # a unit every 30 min for 30 days
        ts = start + k * DAY_MS // 48
        curve.add(ts)
        curve.prune(ts)
    assert curve.total == 1440
    assert curve.last_time() == ts
    assert curve.time_of(1440) == ts
    assert curve.count_at(ts - 1) == 1439


def test_a_feed_silent_for_a_month_starts_a_fresh_curve_with_its_count() -> None:
    curve = CumulativeCurve(horizon_s=3600)
    curve.add(1_000, count=5)
    curve.add(1_000 + 40 * DAY_MS)
    assert curve.total == 6
    assert curve.count_at(1_000 + 40 * DAY_MS) == 6
    assert curve.time_of(6) == 1_000 + 40 * DAY_MS


steps = st.lists(
    st.tuples(st.integers(-2_000, 30_000), st.integers(1, 4), st.booleans()), max_size=400
)


@given(steps)
def test_the_curve_answers_like_a_list_of_every_units_time(
    ops: list[tuple[int, int, bool]],
) -> None:
    """Reference: every unit's time in a list; pruning forgets those older than the horizon."""
    curve = CumulativeCurve(horizon_s=20)
    times: list[int] = []
    forgotten = 0
    last_forgotten: int | None = None
    now = 1_795_000_000_000
    for step, count, prune in ops:
        now += step
        ts = max(now, times[-1]) if times else now  # a late unit is kept at the last time
        curve.add(now, count)
        times += [ts] * count
        if prune:
            curve.prune(now)
            keep_from = bisect_right(times, now - 20_000 - 1, hi=len(times) - 1)
            forgotten += keep_from
            if keep_from:
                last_forgotten = times[keep_from - 1]
            del times[:keep_from]
        oldest = times[0] if times else None
        for probe in (now - 25_000, now - 10_000, now, now + 1):
            expected = forgotten + bisect_right(times, probe) if times else forgotten
            assert curve.count_at(probe) == expected
            at_or_before = [t for t in times if t <= probe]
            latest = at_or_before[-1] if at_or_before else last_forgotten
            assert curve.latest_at(probe) == latest
        for index in (1, forgotten + 1, forgotten + len(times), forgotten + len(times) + 1):
            kept = index - forgotten - 1
            expected_time = times[max(kept, 0)] if index <= forgotten + len(times) else None
            assert curve.time_of(index) == expected_time, (index, oldest)
        assert len(curve) == len(times)


def test_a_reader_may_keep_less_than_the_horizon_and_still_know_the_latest_time() -> None:
    curve = CumulativeCurve(horizon_s=3600)
    for second in range(600):
        curve.add(second * 1_000)
        curve.prune(second * 1_000, horizon_ms=60_000)
    assert len(curve) <= 61
    assert curve.count_at(599_000) == 600
    assert curve.latest_at(599_000) == 599_000
    assert curve.latest_at(580_500) == 580_000
    # Before the kept units, the latest unit is the last one forgotten (as `count_at`
    # counts every forgotten unit there): exact from the horizon on, which is all a
    # reader that says how far back it looks reads.
    assert curve.latest_at(538_999) == 538_000
    assert curve.latest_at(-1) == 538_000
    assert CumulativeCurve(horizon_s=60).latest_at(0) is None
