"""The queue standing upstream of an approach's counting detector (SPEC.md §4.1 spillback).

A detector inside a queue counts the discharge going by, whatever stands behind it. Behind
a lone detector that part is extrapolated from the demand it saw before (detectors/
spillback.py); a detector farther upstream measures it (detectors/upstream.py), and past
that one too it is extrapolated again. This state keeps both episodes and the far count; the
estimator (detectors/queue.py) owns the near detector's and the barriers' curves and passes
what it knows of the lanes.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr

from detectors.approach import ApproachConfig
from detectors.curves import CumulativeCurve
from detectors.estimates import Method
from detectors.spillback import FLOW_WINDOW_MS, MEASURED_MIN_SHARE, SPILL_FLOW_RATIO, Spillback
from detectors.upstream import UpstreamCount


def _upstream_count(
    config: ApproachConfig, horizon_s: float
) -> tuple[UpstreamCount | None, frozenset[str]]:
    up = config.upstream
    if up is None:
        return None, frozenset()
    if up.free_flow_s is not None:
        return UpstreamCount(round(up.free_flow_s * 1000), horizon_s), up.detector_ids
    # Without a surveyed free_flow_s the lag between the detectors is learned, and τ follows
    # the near detector's (`_behind_near_detector`).
    gap_m = up.distance_m - (config.distance_m or 0.0)
    return UpstreamCount(0, horizon_s, gap_m), up.detector_ids


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class BeyondDetector:
    """One approach's queue past its counting detector, at every output `step_ms` apart.

    `arrivals` and `departures` are the estimator's curves of the counting detector and of
    the barriers; the far detector's count keeps `horizon_s` of crossings.
    """

    def __init__(
        self,
        config: ApproachConfig,
        arrivals: CumulativeCurve,
        departures: CumulativeCurve,
        step_ms: int,
        horizon_s: float,
    ) -> None:
        self._config = config
        self._arrivals = arrivals
        self._departures = departures
        self.spill = Spillback(step_ms)
        # A detector farther upstream, and the queue past it, extrapolated as past a lone one.
        self._upstream, self.upstream_ids = _upstream_count(config, horizon_s)
        self._spill_up = Spillback(step_ms)
        # Whether the far detector measured the latest output's queue behind the near one.
        self.measured = False

    def on_near_arrival(self, ts_ms: int, count: int) -> None:
        """Vehicles crossing the counting detector (already in `arrivals`)."""
        if self._upstream is not None and count == 1:
            self._upstream.on_near_arrival(ts_ms, self._arrivals)

    def on_far_arrival(self, ts_ms: int, count: int) -> None:
        """Vehicles crossing the detector farther upstream (`config.upstream`)."""
        if self._upstream is not None:
            self._upstream.on_arrival(ts_ms, count)

    def prune(self, b: int, lookback_ms: int) -> None:
        if self._upstream is not None:
            self._upstream.prune(b, lookback_ms)

    def far_crossings_since(self, since_ms: int) -> int | None:
        """Vehicles the far detector counted after `since_ms`; None without one."""
        up = self._upstream
        if up is None:
            return None
        return up.crossed.total - up.crossed.count_at(since_ms)

    def delay_behind_ms(self, detected_ms: int, tau_ms: int, lead_ms: int) -> int:
        """The part of the delay of the vehicle counted at `detected_ms` spent queued upstream
        of the counting detector (free-flow time `tau_ms` to the barriers), measured by the
        far one while the queue spilled back past the near one (or `lead_ms` before)."""
        up = self._upstream
        if up is None or not self.spill.measured_during(detected_ms, lead_ms):
            return 0
        return up.delay_behind_ms(detected_ms, self._arrivals, tau_ms)

    def check(
        self,
        b: int,
        queue_veh: float,
        method: Method,
        open_lanes: int,
        stand_lanes: float,
        mean_length_m: float,
        tau_ms: int,
        first_ms: int,
        departures_per_s: float,
    ) -> tuple[float, float, float]:
        """The output for boundary `b`: the queue with what stands beyond the counting
        detector, its length in metres, and the wait that part adds.

        `queue_veh` is the counted queue (`method` says how), `stand_lanes` the approach
        lanes it stands in, `mean_length_m` a vehicle's share of them; `tau_ms` is the counting
        detector's free-flow time to the barriers and `first_ms` the approach's first event.
        """
        spill = self.spill
        distance = self._config.distance_m
        if distance is None or method != "input_output":
            spill.end()
            self._spill_up.end()
            self.measured = False
            lanes = self._config.queue_lanes or max(open_lanes, 1)
            return queue_veh, queue_veh * mean_length_m / lanes, 0.0
        reach_veh = distance * stand_lanes / mean_length_m
        counted_veh = queue_veh
        hidden_veh = 0.0  # queued upstream of the detector, where its count cannot see
        behind = self._behind_near_detector(b, counted_veh, reach_veh, tau_ms)
        self.measured = behind is not None
        if behind is not None:
            spill.update_measured(b, counted_veh, reach_veh, behind)
            if spill.active:
                queue_veh = self._beyond_far_detector(
                    b, counted_veh + behind, open_lanes, mean_length_m, first_ms
                )
                spill.hidden_veh = queue_veh - counted_veh  # for the alert's evidence
                # Each departure's wait holds its time behind this detector, measured; only
                # what stands past the far one too is, as with a lone detector, extrapolated.
                hidden_veh = queue_veh - counted_veh - behind
        else:
            self._spill_up.end()
            spill.update(
                b,
                counted_veh,
                reach_veh,
                open_lanes,
                self._arrivals,
                self._departures,
                first_ms,
            )
            if spill.active:
                # The detector sits in the queue and undercounts it: it is at least that long,
                # plus what the demand seen before the spillback has piled up behind it since.
                queue_veh = max(counted_veh, reach_veh) + spill.hidden_veh
                hidden_veh = spill.hidden_veh
        hidden_wait_s = 0.0
        if hidden_veh > 0 and departures_per_s > 0:
            hidden_wait_s = hidden_veh / departures_per_s
        queue_m = queue_veh * mean_length_m / stand_lanes
        return queue_veh, queue_m, hidden_wait_s

    def _behind_near_detector(
        self, b: int, counted_veh: float, reach_veh: float, tau_ms: int
    ) -> float | None:
        """The vehicles queued upstream of the counting detector, measured by the one farther
        upstream; None without one that can tell."""
        up = self._upstream
        if up is None:
            return None
        far = self._config.upstream
        if far is not None and far.free_flow_s is None:
            # The near detector's τ plus the lag between the two: learned, or until then the
            # stretch at the approach speed.
            lag_ms = up.lag_ms
            if lag_ms is None:
                gap_m = far.distance_m - (self._config.distance_m or 0.0)
                lag_ms = round(gap_m / self._config.approach_speed_mps * 1000)
            up.tau_ms = tau_ms + lag_ms
        inside = counted_veh < MEASURED_MIN_SHARE * reach_veh
        clear = inside and not self.spill.active
        # The near detector passing clearly fewer vehicles than the barriers serve sees the
        # tail of the queue go by: nobody stands behind it any more.
        emptied = inside and self.spill.active and self._detector_sees_the_tail(b)
        return up.behind(b, self._arrivals, tau_ms, clear, emptied)

    def _detector_sees_the_tail(self, b: int) -> bool:
        arrived = self._arrivals.count_at(b) - self._arrivals.count_at(b - FLOW_WINDOW_MS)
        left = self._departures.total - self._departures.count_at(b - FLOW_WINDOW_MS)
        return arrived < SPILL_FLOW_RATIO * left

    def _beyond_far_detector(
        self, b: int, measured_veh: float, open_lanes: int, mean_length_m: float, first_ms: int
    ) -> float:
        """The queue measured up to the far detector, and past it once it reaches that one too."""
        up = self._upstream
        far = self._config.upstream
        if up is None or far is None:
            return measured_veh
        lanes = far.queue_lanes or self._config.queue_lanes or max(open_lanes, 1)
        reach_veh = far.distance_m * lanes / mean_length_m
        spill_up = self._spill_up
        spill_up.update(
            b, measured_veh, reach_veh, open_lanes, up.crossed, self._departures, first_ms
        )
        if spill_up.active:
            return max(measured_veh, reach_veh) + spill_up.hidden_veh
        return measured_veh
