"""The queue behind the counting detector, measured by a detector farther upstream (SPEC §4.1).

An approach with detectors at two distances counts with the nearer one (its plates and count
corrections) and measures with the farther one what spills back past it. At free flow a
vehicle crosses both: it is due at the barriers τ_far after the far crossing and τ_near after
the near one, so A_far(t − τ_far) and A_near(t − τ_near) count the same vehicles. What the
first count holds beyond the second is the vehicles due at the barriers that have not yet
crossed the near detector: the queue standing behind it, which the near count cannot see.

Two counters never agree exactly (miscounts, a τ surveyed a second off, a slow truck), so
their difference while no queue stands between them is the calibration: the median over the
last two minutes in which the near detector's queue was clearly short of it, frozen while it
is not.

A calibration absorbs a τ that is off only while the flow stays as it was: an error of d
seconds shifts the difference by d × the flow. So where the far detector's free-flow time
was not surveyed it is learned: the lag between a vehicle's two crossings, taken from
vehicles alone on the stretch (no other crossing of either detector around theirs) and, in
busy clear periods, as the lag that keeps the difference of the counts flattest over the
last four minutes (the right lag leaves only the odd slow vehicle; a wrong one, every
bunching of the traffic).
"""

from __future__ import annotations

from collections import deque
from statistics import median

from mypy_extensions import mypyc_attr

from detectors.curves import CumulativeCurve

# The calibration: the median difference of the counts over this much of the latest clear time.
CALIBRATION_WINDOW_MS = 120_000
MIN_CALIBRATION_SAMPLES = 6
# The far detector is not counting once the near one has counted this many vehicles that
# should have crossed it (at free flow) this long after its last count.
SILENT_MS = 60_000
SILENT_NEAR_MIN = 5
# Learning the lag between the detectors: vehicles crossing the stretch between these speeds,
# the median of the latest samples, used from this many on.
FASTEST_MPS = 40.0
SLOWEST_MPS = 5.0
LAG_SAMPLES = 31
MIN_LAG_SAMPLES = 5
# The fit of the lag: over this much clear time, the counts read this often, once a minute,
# from this many vehicles on.
FIT_WINDOW_MS = 240_000
FIT_STEP_MS = 2_000
FIT_EVERY_MS = 60_000
# Once the lag has its full set of samples, a fit now and then follows a change of it.
FIT_SETTLED_EVERY_MS = 900_000
FIT_MIN_VEHICLES = 20
# Lags tried: every second over the range of speeds, then every 100 ms around the best.
LAG_STEP_MS = 1_000
LAG_FINE_STEP_MS = 100


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class UpstreamCount:
    """The far detector's count and its calibration against the near one."""

    def __init__(self, tau_ms: int, horizon_s: float, gap_m: float = 0.0) -> None:
        self.tau_ms = tau_ms  # free-flow time from the far detector to the barriers
        self.crossed = CumulativeCurve(horizon_s)
        # (output time, difference of the counts) at outputs with no queue between them.
        self._samples: deque[tuple[int, int]] = deque()
        self.calibration: float | None = None
        # With `gap_m`, the stretch between the detectors, the lag across it is learned.
        self._gap_m = gap_m
        self._lags: deque[int] = deque(maxlen=LAG_SAMPLES)
        self.lag_ms: int | None = None
        self._clear_since: int | None = None
        self._fitted_at = 0

    def on_near_arrival(self, ts_ms: int, near: CumulativeCurve) -> None:
        """A vehicle crossing the near detector (already in `near`): if it was alone on the
        stretch, the time since the one far crossing before it is a sample of the lag."""
        if self._gap_m <= 0:
            return
        longest = round(self._gap_m / SLOWEST_MPS * 1000)
        if near.count_at(ts_ms) - near.count_at(ts_ms - longest) != 1:
            return
        far = self.crossed
        since = far.count_at(ts_ms - longest)
        if far.total - since != 1 or far.count_at(ts_ms - 2 * longest) != since:
            return
        far_ms = far.latest_at(ts_ms)
        if far_ms is None or ts_ms - far_ms < self._gap_m / FASTEST_MPS * 1000:
            return
        self._add_lag(ts_ms - far_ms)

    def _add_lag(self, lag_ms: int) -> None:
        self._lags.append(lag_ms)
        if len(self._lags) >= MIN_LAG_SAMPLES:
            self.lag_ms = sorted(self._lags)[len(self._lags) // 2]

    def _fit_lag(self, b: int, near: CumulativeCurve) -> None:
        """The lag that keeps A_far(t − lag) − A_near(t) flattest over the clear window."""
        since = self._clear_since
        if self._gap_m <= 0 or since is None or b - since < FIT_WINDOW_MS:
            return
        settled = len(self._lags) == LAG_SAMPLES
        if b - self._fitted_at < (FIT_SETTLED_EVERY_MS if settled else FIT_EVERY_MS):
            return
        self._fitted_at = b
        start = b - FIT_WINDOW_MS
        if near.count_at(b) - near.count_at(start) < FIT_MIN_VEHICLES:
            return
        times = range(start, b + 1, FIT_STEP_MS)
        nears = [near.count_at(t) for t in times]
        shortest = round(self._gap_m / FASTEST_MPS * 1000)
        longest = round(self._gap_m / SLOWEST_MPS * 1000)
        coarse = self._flattest(range(shortest, longest + 1, LAG_STEP_MS), times, nears)
        fine = range(coarse - LAG_STEP_MS, coarse + LAG_STEP_MS + 1, LAG_FINE_STEP_MS)
        self._add_lag(self._flattest(fine, times, nears))

    def _flattest(self, lags: range, times: range, nears: list[int]) -> int:
        far = self.crossed
        best_lag, best_spread = lags[0], -1.0
        for lag in lags:
            diffs = [far.count_at(t - lag) - n for t, n in zip(times, nears, strict=True)]
            mean = sum(diffs) / len(diffs)
            spread = sum((d - mean) * (d - mean) for d in diffs)
            if best_spread < 0 or spread < best_spread:
                best_lag, best_spread = lag, spread
        return best_lag

    def on_arrival(self, ts_ms: int, count: int = 1) -> None:
        """Vehicles crossing the far detector."""
        self.crossed.add(ts_ms, count)

    def prune(self, b: int, lookback_ms: int) -> None:
        self.crossed.prune(b, lookback_ms)

    def behind(
        self, b: int, near: CumulativeCurve, near_tau_ms: int, clear: bool, emptied: bool = False
    ) -> float | None:
        """Vehicles due at the barriers by `b` that have not crossed the near detector.

        `near` is the near detector's raw count and `near_tau_ms` its free-flow time to the
        barriers; `clear` says that no queue stands between the two detectors now (the near
        detector's queue is well inside it), so the difference of the counts is their
        calibration; `emptied`, that the tail of a queue has just gone by the near detector,
        so that nobody is behind it whatever the counts say: they are re-anchored. None while
        the far detector cannot tell: not calibrated yet, or silent.
        """
        difference = self.crossed.count_at(b - self.tau_ms) - near.count_at(b - near_tau_ms)
        if emptied:
            # Miscounts of either detector pile up while a queue stands between them, with no
            # clear time to calibrate: the count they drifted by is forgotten here.
            self._samples.clear()
            self.calibration = float(difference)
        if clear or emptied:
            self._learn(b, difference)
        if clear:
            if self._clear_since is None:
                self._clear_since = b
            self._fit_lag(b, near)
        else:
            self._clear_since = None
        if self.calibration is None or self._silent(near, near_tau_ms):
            return None
        return max(difference - self.calibration, 0.0)

    def delay_behind_ms(self, detected_ms: int, near: CumulativeCurve, near_tau_ms: int) -> int:
        """How long the vehicle the near detector counted at `detected_ms` was queued behind it:
        from when it was due there (at free flow from its crossing of the far detector, the
        same vehicle by count once calibrated) to when it crossed."""
        if self.calibration is None:
            return 0
        far_ms = self.crossed.time_of(near.count_at(detected_ms) + round(self.calibration))
        if far_ms is None:
            return 0
        return max(detected_ms - (far_ms + self.tau_ms - near_tau_ms), 0)

    def _learn(self, b: int, difference: int) -> None:
        samples = self._samples
        samples.append((b, difference))
        while samples[0][0] <= b - CALIBRATION_WINDOW_MS:
            samples.popleft()
        if len(samples) >= MIN_CALIBRATION_SAMPLES:
            self.calibration = float(median([d for _, d in samples]))

    def _silent(self, near: CumulativeCurve, near_tau_ms: int) -> bool:
        far_last = self.crossed.last_time()
        if far_last is None:
            return near.total >= SILENT_NEAR_MIN
        since = far_last + self.tau_ms - near_tau_ms + SILENT_MS
        return near.total - near.count_at(since) >= SILENT_NEAR_MIN
