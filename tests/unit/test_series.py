"""Sliding windows in flat arrays: the same samples as a deque of tuples, in a fraction of
the memory; and plate keys that mean the same in every process."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.queue import plate_key
from detectors.series import TimedSeries

# An operation: append a sample (time step, value), or drop through (now - lag).
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(-50, 1_000), st.floats(-1e6, 1e6)),
        st.tuples(st.just("drop"), st.integers(0, 5_000), st.just(0.0)),
    ),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_a_series_keeps_and_drops_what_a_deque_of_tuples_would(
    ops: list[tuple[str, int, float]],
) -> None:
    series = TimedSeries("dq")
    reference: deque[tuple[int, float, int]] = deque()
    now = 0
    for op, step, value in ops:
        if op == "append":
            now += step  # mostly forward, sometimes a little back (late events)
            series.append2(now, value, len(reference))
            reference.append((now, value, len(reference)))
        else:
            horizon = now - step
            dropped = []
            while reference and reference[0][0] <= horizon:
                dropped.append(reference.popleft())
            values, tags = series.columns
            times = series.times
            assert [(times[i], values[i], tags[i]) for i in series.drop_through(horizon)] == dropped
        assert len(series) == len(reference)
        if reference:
            assert (series.oldest_ts(), series.oldest(0)) == reference[0][:2]


def test_a_sample_takes_a_few_bytes_a_value() -> None:
    tracemalloc.start()
    try:
        series = TimedSeries("dd")
        for i in range(10_000):
            series.append2(1_764_300_000_000 + i * 100, i / 7, i / 3)
            if i % 100 == 0:
                series.drop_through(1_764_300_000_000 + i * 100 - 60_000)
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The last drop (at sample 9,900) kept samples 9,301 on. Three 8-byte values each; at
    # most as many more dropped but not yet deleted, and the arrays' spare capacity.
    assert len(series) == 10_000 - 9_301
    assert size / len(series) < 3 * 8 * 2 * 1.5


def test_a_plate_key_is_the_same_in_every_process() -> None:
    """Keys are saved in checkpoints and restored by another worker process."""
    code = "from detectors.queue import plate_key; print(plate_key('a3f9c0'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": "."},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert runs == {str(plate_key("a3f9c0"))}
    assert plate_key("a3f9c0") != plate_key("a3f9c1")
