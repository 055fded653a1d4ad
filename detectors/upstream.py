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


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class UpstreamCount:
    """The far detector's count and its calibration against the near one."""

    def __init__(self, tau_ms: int, horizon_s: float) -> None:
        self.tau_ms = tau_ms  # free-flow time from the far detector to the barriers
        self.crossed = CumulativeCurve(horizon_s)
        # (output time, difference of the counts) at outputs with no queue between them.
        self._samples: deque[tuple[int, int]] = deque()
        self.calibration: float | None = None

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
