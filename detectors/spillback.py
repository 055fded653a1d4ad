"""The queue behind an approach detector once it spills back past it (SPEC.md §4.1).

A detector inside a queue counts the discharge going by, whatever stands behind it: from
then on the input-output count misses the vehicles queued upstream. The queue is at least
as long as the road between the detector and the barriers holds (its *reach*), plus a
hidden part, extrapolated from the demand the detector measured before the spillback.

The estimator owns the curves (vehicles that crossed the detector, vehicles that left the
barriers); this state keeps only the episode: when it began, the demand then, how old the
surge was, and the vehicles hidden upstream so far.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr

from detectors.curves import CumulativeCurve

# Spillback clears only when the queue is clearly back inside the detector, so it does not flap.
SPILLBACK_CLEAR_RATIO = 0.75
# Demand before a spillback, measured upstream of the queue while the detector still could.
SPILL_DEMAND_WINDOW_MS = 180_000
# The detector's flow is compared with the discharge over this window.
FLOW_WINDOW_MS = 60_000
# Bounds on the age of the surge that demand is assumed to keep its own (see the fade).
SPILL_DECAY_MIN_MS = 60_000
SPILL_DECAY_MAX_MS = 900_000
# Detector flow below this share of the departures means the detector is no longer in the queue.
SPILL_FLOW_RATIO = 0.8
# Measured by a detector farther upstream, this many vehicles queued behind the counting one
# start a spillback: fewer can be vehicles a little slower than free flow between the two.
MEASURED_START_VEH = 3.0
# ... and only with a counted queue of at least this share of the stretch down to the
# barriers: a queue cannot stand past the detector without one in front of it. Below it the
# two detectors' counts calibrate against each other instead (detectors/upstream.py).
MEASURED_MIN_SHARE = 0.5


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class Spillback:
    """One approach's spillback episode, updated at every output, `step_ms` apart."""

    def __init__(self, step_ms: int) -> None:
        self._step_ms = step_ms
        self.active = False
        self.hidden_veh = 0.0  # vehicles queued upstream of the detector, extrapolated
        # The last output at which the counted queue was under a vehicle per open lane.
        self._short_at: int | None = None
        self._started_ms = 0
        # When the last episode measured by a detector upstream ended; None while it lasts.
        self._measured_until: int | None = None
        self._demand_per_ms = 0.0
        self._decay_ms = float(SPILL_DECAY_MIN_MS)

    def update(
        self,
        b: int,
        counted_veh: float,
        reach_veh: float,
        open_lanes: int,
        crossed: CumulativeCurve,
        served: CumulativeCurve,
        first_ms: int,
    ) -> None:
        """Start, grow or end the episode at the output for boundary `b`.

        `counted_veh` is the input-output queue, `reach_veh` how many vehicles stand between
        the detector and the barriers; `crossed` and `served` are the detector's and the
        barriers' cumulative counts, observed since `first_ms`.
        """
        if counted_veh < max(open_lanes, 1):
            self._short_at = b
        if not self.active and counted_veh >= reach_veh:
            self._start(b, reach_veh, crossed, served, first_ms)
        elif (
            self.active and counted_veh < SPILLBACK_CLEAR_RATIO * reach_veh and self.hidden_veh < 1
        ):
            # The tail is back inside the detector: every queued vehicle has been counted. A
            # short visible queue alone does not say so: inside a spilled queue the detector
            # passes the discharge, and the stretch down to the barriers need not be packed.
            self.end()
        if self.active:
            self._grow(b, counted_veh, crossed, served)

    def update_measured(
        self, b: int, counted_veh: float, reach_veh: float, behind_veh: float
    ) -> None:
        """Start or end the episode at the output for boundary `b`, with the vehicles queued
        behind the detector measured (`behind_veh`, by a detector farther upstream) rather
        than extrapolated."""
        if not self.active and (
            counted_veh >= reach_veh
            or (behind_veh >= MEASURED_START_VEH and counted_veh >= MEASURED_MIN_SHARE * reach_veh)
        ):
            self.active = True
            self._started_ms = b
            self._measured_until = None
        elif self.active and counted_veh < SPILLBACK_CLEAR_RATIO * reach_veh and behind_veh < 1:
            self.end()
            self._measured_until = b
        self.hidden_veh = behind_veh if self.active else 0.0

    def measured_during(self, ts_ms: int, lead_ms: int) -> bool:
        """Whether ts_ms falls in the latest episode measured from upstream, from `lead_ms`
        before its start (it starts once a few vehicles are behind the detector)."""
        if ts_ms < self._started_ms - lead_ms:
            return False
        if self.active:
            return True
        return self._measured_until is not None and ts_ms <= self._measured_until

    def end(self) -> None:
        """No spillback (or no detector for one)."""
        self.active = False
        self.hidden_veh = 0.0

    def _start(
        self,
        b: int,
        reach_veh: float,
        crossed: CumulativeCurve,
        served: CumulativeCurve,
        first_ms: int,
    ) -> None:
        self.active = True
        self._started_ms = b
        span_ms = min(SPILL_DEMAND_WINDOW_MS, max(b - first_ms, self._step_ms))
        arrived = crossed.count_at(b) - crossed.count_at(b - span_ms)
        left = served.total - served.count_at(b - span_ms)
        self._demand_per_ms = arrived / span_ms
        # How old the surge is: at least as long as the queue has been rising, and as long as
        # the measured excess of demand over discharge takes to pile up the queue that now
        # reaches the detector (demand continuity; the rising time misses its slow start).
        age_ms = float(b - (self._short_at or b))
        excess_per_ms = (arrived - left) / span_ms
        if excess_per_ms > 0:
            age_ms = max(age_ms, reach_veh / excess_per_ms)
        self._decay_ms = min(max(age_ms, SPILL_DECAY_MIN_MS), SPILL_DECAY_MAX_MS)
        self.hidden_veh = 0.0

    def _grow(
        self, b: int, counted_veh: float, crossed: CumulativeCurve, served: CumulativeCurve
    ) -> None:
        arrived = crossed.count_at(b) - crossed.count_at(b - FLOW_WINDOW_MS)
        left = served.total - served.count_at(b - FLOW_WINDOW_MS)
        if arrived == 0 and counted_veh < 1:
            # Nobody crossed the detector for a minute and nobody counted is left: the queue
            # behind it, being only an extrapolation, has no evidence left either.
            self.hidden_veh = 0.0
            return
        if arrived < SPILL_FLOW_RATIO * left:
            # A detector inside a queue counts what the barriers discharge; counting clearly
            # less, it sees the tail go by: nobody is queued upstream of it any more. Stop-and-go
            # flow inside a queue can look the same for a minute, so the hidden part is drained
            # at the discharge rate rather than dropped at once.
            drained = left * self._step_ms / FLOW_WINDOW_MS
            self.hidden_veh = max(self.hidden_veh - drained, 0.0)
            return
        if arrived * SPILL_FLOW_RATIO > left:
            # Counting clearly more than the discharge, the detector still sees the demand
            # arrive: the queue grows in view, not behind it.
            return
        # Behind the detector the queue grows by the demand it no longer lets through. Demand
        # is unobservable now, and surges end at an unknown time: with no more than how long
        # this one has lasted to go by (R, the queue's build-up), the chance it still goes on
        # after a further t is taken as R / (R + t) (expected remaining life = age so far).
        fade = self._decay_ms / (self._decay_ms + b - self._started_ms)
        excess_per_ms = max(self._demand_per_ms - arrived / FLOW_WINDOW_MS, 0.0)
        self.hidden_veh += fade * excess_per_ms * self._step_ms
