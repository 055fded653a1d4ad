"""Queue and wait per approach (plaza × direction), SPEC.md §4.1, on event time only.

Input-output model: A(t) counts approach detections, D(t) departures. The vehicles that
have reached the barriers by t at free-flow speed and not yet left are N(t) = A(t−τ) − D(t);
of these, as many as there are lanes serving are in service (detectors/lanes.py), the rest
wait.
A departure at td with service s started service at td − s; its delay is that start minus
its free-flow arrival at the barrier, measured directly when its plate was seen at the
detector, otherwise paired first-come-first-served with the unplated detections. Plates do
not shift the count by ranks (ETC vehicles overtake manual ones); the plated vehicles still
due are a floor for it. Past the detector (spillback) the queue is extended by what stands
behind it (detectors/beyond.py): measured by a detector farther up, or the demand the
detector stopped seeing.

Outputs are produced for every 5 s boundary b of event time once an event (or `advance`) is
past b, from the events with ts ≤ b only, so any batching of the same events in the same
order gives the same outputs. Feed each approach's events in non-decreasing ts (the stream
layer's reorder buffer does that); a late event is counted at the next boundary.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from typing import NamedTuple

from mypy_extensions import mypyc_attr

from detectors.alerts import Alert, EvidenceValue
from detectors.approach import ApproachConfig, LaneType, ServiceTimes, VehicleLengths
from detectors.beyond import BeyondDetector
from detectors.congestion import (
    CongestionHysteresis,
    CongestionThresholds,
    congestion_level,
    queue_congestion_alert,
    recommend_lanes,
)
from detectors.curves import CumulativeCurve
from detectors.estimates import Method, QueueEstimate
from detectors.headway import IDLE_SPELL_HORIZON_MS, headway_queue
from detectors.lanes import LanePool
from detectors.series import TimedSeries
from tollmon.events import (
    ApproachDetection,
    LaneState,
    LaneStatus,
    LaneTransaction,
    Payment,
    TxResult,
)

__all__ = [
    "ApproachConfig",
    "ApproachEstimator",
    "CongestionThresholds",
    "Emitted",
    "LaneType",
    "Method",
    "QueueEstimate",
    "ServiceTimes",
    "VehicleLengths",
]

BOUNDARY_MS = 5_000
WAIT_WINDOW_MS = 30_000
RATE_WINDOW_MS = 60_000
# Demand and service for the lane recommendation: long enough to be stable, short enough to
# follow a peak.
DEMAND_WINDOW_MS = 300_000
# The unplated detections are paired with departures in order, so their curve keeps as
# long as a vehicle may wait: far longer than any wait seen.
CURVE_HORIZON_S = 3_600.0
# The count curves (detections, departures, plated detections) are read back at most over
# the longest window on them (the dead-detector and demand windows, 5 minutes) or, to
# learn τ from an isolated vehicle, 8 τ: they keep this much, or 8 τ and 5 minutes more.
COUNTS_LOOKBACK_MS = 600_000
PLATE_HORIZON_MS = 1_800_000
MAX_CLASSES = 32
# An unmatched detection counts as a ghost (phantom count or misread plate) once it is older
# than this multiple of the longest plate-matched delay of the last few minutes, or this floor.
GHOST_WINDOW_MS = 300_000
GHOST_AGE_FACTOR = 3
GHOST_MIN_AGE_MS = 60_000
TAU_SAMPLES = 31
MIN_TAU_SAMPLES = 5
# Queue below which a plate-matched travel time counts as free flow for learning τ.
FREE_FLOW_QUEUE_VEH = 0.5
# A detector silent this long while lanes keep serving is dead: fall back to headways.
DEAD_DETECTOR_MS = 300_000
DEAD_DETECTOR_MIN_DEPARTURES = 10
LENGTH_EWMA_ALPHA = 0.05
# A delay from which a vehicle counts as having waited at the barrier (not τ's spread).
WAITED_MIN_S = 1.0
# The share of detections with a plate read, over this window and from this many detections:
# beyond this many standard deviations more unplated vehicles wait than that share implies.
PLATE_SHARE_WINDOW_MS = 600_000
PLATE_SHARE_MIN_DETECTIONS = 50
PLATE_SHARE_SIGMAS = 3.0
# How far back a moment when lanes stood idle still re-anchors the count (within the curves).
IDLE_MOMENT_LOOKBACK_MS = IDLE_SPELL_HORIZON_MS
# The spread of free-flow times (of τ, at least this): a vehicle due that recently may still be
# on its way to the barrier, so a free moment proves nothing about it.
IDLE_MOMENT_SPREAD_MIN_MS = 5_000
# What the detector's count is corrected for: vehicles it missed, and vehicles it counted that
# were never there.
CORRECTION_KINDS = ("missed", "phantom")


class Emitted(NamedTuple):
    """What one `advance` produced, in event-time order."""

    estimates: list[QueueEstimate]
    alerts: list[Alert]


# (ts, lane_id, payment, result, vehicle_class, service_ms, plate_hash)
_Departure = tuple[int, str, Payment, TxResult, str, int | None, str | None]


def _departure_order(d: _Departure) -> tuple[int, str, str]:
    # Same-ts departures are taken in a fixed order so that feed order cannot change ranks.
    return d[0], d[1], d[6] or ""


def _next_boundary(ts_ms: int) -> int:
    return -(-ts_ms // BOUNDARY_MS) * BOUNDARY_MS


LANE_TYPES: tuple[LaneType, ...] = ("ETC", "MTC", "MIXED")


def plate_key(plate_hash: str) -> int:
    """A plate hash as a 64-bit key: an int kept in an array, not a string per vehicle.

    A stable digest, not `hash()`: Python's string hashes differ per process, and the
    keys outlive the process in checkpoints.
    """
    digest = hashlib.blake2b(plate_hash.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class ApproachEstimator:
    """Queue-and-wait state of one approach; feed events in ts order, collect with `advance`."""

    def __init__(self, config: ApproachConfig) -> None:
        self.config = config
        self._lanes = LanePool(config.lanes, config.service, BOUNDARY_MS)
        # The count curves are pruned with `_counts_lookback_ms` (see COUNTS_LOOKBACK_MS).
        self._arrivals = CumulativeCurve(COUNTS_LOOKBACK_MS / 1000)
        self._departures = CumulativeCurve(COUNTS_LOOKBACK_MS / 1000)
        # Raw detections minus the vehicles they really stand for (miscounts, re-anchors).
        self._offset = 0.0
        # When missed detections were last put back: the offset holds them from then on only,
        # so counts at earlier times read with it are too high by as many.
        self._missed_found_ms = -1
        # Detections with a plate read, and how many of them have left (or been given up on):
        # the plated vehicles still due at the barriers are an exact floor for the count.
        self._plated = CumulativeCurve(COUNTS_LOOKBACK_MS / 1000)
        self._plates_closed = 0
        self._unplated = CumulativeCurve(CURVE_HORIZON_S)
        # The next unplated detection a departure without a plate match is paired with.
        self._unplated_next = 1
        # Plates seen at the detector and not yet at a barrier: their keys (`plate_key`)
        # and detection times, by key and in detection order.
        self._plates: dict[int, int] = {}
        self._plate_order = TimedSeries("q")
        # Plate-matched delays of the last few minutes, as a sliding maximum (monotone deque).
        self._matched_max: deque[tuple[int, int]] = deque()
        if config.free_flow_s is not None:
            self._tau_ms = round(config.free_flow_s * 1000)
        elif config.distance_m is not None:
            self._tau_ms = round(config.distance_m / config.approach_speed_mps * 1000)
        else:
            self._tau_ms = 0
        self._tau_samples: deque[int] = deque(maxlen=TAU_SAMPLES)
        self._pending: list[_Departure] = []
        self._pending_ts = -1  # the newest departure time among them
        # Per departure: its delay (s) and its lane type (an index into LANE_TYPES).
        self._delays = TimedSeries("db")
        self._delay_sum_s = 0.0
        # By Little's law a lane type's share of the queue is its share of the delay given.
        self._delay_sum_by_type: dict[LaneType, float] = {"ETC": 0.0, "MTC": 0.0, "MIXED": 0.0}
        self._services = TimedSeries("d")  # per departure: its service time (s)
        self._service_sum_s = 0.0
        self._mean_length_m = config.vehicle_lengths.passenger_m
        self._class_length: dict[str, float] = {}
        # What stands upstream of the detector once the queue spills back past it.
        self._beyond = BeyondDetector(
            config, self._arrivals, self._departures, BOUNDARY_MS, COUNTS_LOOKBACK_MS / 1000
        )
        self._upstream_ids = self._beyond.upstream_ids
        self._unused_ids = config.unused_detector_ids
        self._last_queue_veh = 0.0
        self._first_ms: int | None = None
        self._boundary: int | None = None
        self._hysteresis = CongestionHysteresis(config.thresholds)
        self._firing: Alert | None = None
        self._out_estimates: list[QueueEstimate] = []
        self._out_alerts: list[Alert] = []
        # Cumulative per-vehicle totals, for metrics and validation.
        self.departures_total = 0
        self.delay_total_s = 0.0
        self.plate_matches_total = 0
        # Count corrections not yet taken (`take_corrections`): vehicles the detector missed,
        # put back, and vehicles it counted that were never there, forgotten.
        self._missed_new = 0.0
        self._phantoms_new = 0.0

    # ---- feeding events -------------------------------------------------------------------

    def observe(self, event: ApproachDetection | LaneTransaction | LaneStatus) -> None:
        """Feed one event of this approach (any of the three kinds)."""
        if isinstance(event, ApproachDetection):
            detector_id = event.detector_id
            if detector_id in self._upstream_ids:
                self.on_upstream_arrival(event.ts, event.count)
            elif detector_id not in self._unused_ids:
                self.on_arrival(event.ts, event.count, event.plate_hash)
        elif isinstance(event, LaneTransaction):
            self.on_departure(
                event.ts,
                event.lane_id,
                event.payment,
                event.result,
                event.vehicle_class,
                event.service_ms,
                event.plate_hash,
            )
        else:
            self.on_lane_status(event.ts, event.lane_id, event.state)

    def on_arrival(self, ts_ms: int, count: int = 1, plate_hash: str | None = None) -> None:
        """Vehicles crossing the approach detector."""
        self._close_before(ts_ms)
        self._arrivals.add(ts_ms, count)
        self._beyond.on_near_arrival(ts_ms, count)
        if plate_hash is None:
            self._unplated.add(ts_ms, count)
            return
        if count > 1:
            self._unplated.add(ts_ms, count - 1)
        plate = plate_key(plate_hash)
        if plate in self._plates:
            # The same plate twice: the earlier read was someone else's (a misread).
            self._plates_closed += 1
        self._plated.add(ts_ms)
        self._plates[plate] = ts_ms
        self._plate_order.append(ts_ms, plate)

    def on_upstream_arrival(self, ts_ms: int, count: int = 1) -> None:
        """Vehicles crossing the detector farther upstream (`config.upstream`)."""
        self._close_before(ts_ms)
        self._beyond.on_far_arrival(ts_ms, count)

    def on_departure(
        self,
        ts_ms: int,
        lane_id: str,
        payment: Payment = "ETC",
        result: TxResult = "OK",
        vehicle_class: str = "K1",
        service_ms: int | None = None,
        plate_hash: str | None = None,
    ) -> None:
        """A vehicle leaving a barrier (a lane transaction)."""
        self._close_before(ts_ms)
        pending = self._pending
        if pending and ts_ms > self._pending_ts:
            # Events come in time order, so every departure before this one is in: take
            # them now, not all at the next boundary, where every plaza's would fall due
            # at once. Those of one time wait for this, as they are taken in a fixed order.
            self._take_pending()
        pending.append((ts_ms, lane_id, payment, result, vehicle_class, service_ms, plate_hash))
        self._pending_ts = max(self._pending_ts, ts_ms)

    def on_lane_status(self, ts_ms: int, lane_id: str, state: LaneState) -> None:
        """A lane opened, closed or faulted; boundaries from ts_ms on see the new lane count."""
        self._close_before(ts_ms)
        self._lanes.set_open(lane_id, state == "OPEN")

    def advance(self, ts_ms: int) -> Emitted:
        """Close every boundary before ts_ms and hand over all outputs not yet collected."""
        if self._boundary is not None:
            self._close_before(ts_ms)
        out = Emitted(self._out_estimates, self._out_alerts)
        self._out_estimates = []
        self._out_alerts = []
        return out

    def take_corrections(self) -> list[tuple[str, float]]:
        """Per kind of `CORRECTION_KINDS`, the vehicles put back into the count (missed by
        the detector) and forgotten from it (counted, never there) since the last call, where
        any: how far the detector is off."""
        taken = [
            (kind, vehicles)
            for kind, vehicles in zip(
                CORRECTION_KINDS, (self._missed_new, self._phantoms_new), strict=True
            )
            if vehicles
        ]
        self._missed_new = 0.0
        self._phantoms_new = 0.0
        return taken

    # ---- boundaries -----------------------------------------------------------------------

    def _close_before(self, ts_ms: int) -> None:
        if self._boundary is None:
            self._first_ms = ts_ms
            self._boundary = _next_boundary(ts_ms)
            return
        while self._boundary < ts_ms:
            self._close(self._boundary)
            self._boundary += BOUNDARY_MS

    def _close(self, b: int) -> None:
        if self._pending:
            self._take_pending()
        self._prune(b)
        cfg = self.config
        open_lanes = self._lanes.open_count
        departures_per_min = float(
            self._departures.total - self._departures.count_at(b - RATE_WINDOW_MS)
        )
        if self._method(b) == "input_output":
            method: Method = "input_output"
            queue_veh = self._io_queue(b)
            wait_s = self._delay_sum_s / len(self._delays) if self._delays else 0.0
            arrivals_per_min = float(
                self._arrivals.count_at(b) - self._arrivals.count_at(b - RATE_WINDOW_MS)
            )
        else:
            method = "headway"
            queue_veh, wait_s = headway_queue(self._lanes.loads(b, self._first_ms or b))
            arrivals_per_min = departures_per_min
        queue_veh, queue_m, hidden_wait_s = self._spillback_check(b, queue_veh, method, open_lanes)
        wait_s += hidden_wait_s
        spillback = self._beyond.spill.active
        level = congestion_level(queue_veh, wait_s, open_lanes, spillback, cfg.thresholds)
        self._last_queue_veh = queue_veh
        estimate = QueueEstimate(
            ts=b,
            plaza_id=cfg.plaza_id,
            direction=cfg.direction,
            queue_veh=round(queue_veh, 3),
            queue_m=round(queue_m, 1),
            wait_s=round(wait_s, 2),
            arrivals_per_min=arrivals_per_min,
            departures_per_min=departures_per_min,
            open_lanes=open_lanes,
            level=level,
            spillback=spillback,
            method=method,
        )
        self._out_estimates.append(estimate)
        self._alert_step(estimate, b)

    def _take_pending(self) -> None:
        pending = self._pending
        if len(pending) > 1:
            # A late departure goes into its place, and those of one time in a fixed order:
            # the order the feed happened to deliver them in must not change ranks.
            pending.sort(key=_departure_order)
        for departure in pending:
            self._process_departure(*departure)
        pending.clear()
        self._pending_ts = -1

    def _counts_lookback_ms(self) -> int:
        return max(COUNTS_LOOKBACK_MS, 8 * self._tau_ms + 300_000)

    def _prune(self, b: int) -> None:
        lookback_ms = self._counts_lookback_ms()
        self._arrivals.prune(b, lookback_ms)
        self._departures.prune(b, lookback_ms)
        self._beyond.prune(b, lookback_ms)
        horizon = b - WAIT_WINDOW_MS
        delays, types = self._delays.columns
        for i in self._delays.drop_through(horizon):
            delay_s = delays[i]
            self._delay_sum_s -= delay_s
            self._delay_sum_by_type[LANE_TYPES[types[i]]] -= delay_s
        if not self._delays:
            self._delay_sum_s = 0.0
            self._delay_sum_by_type = dict.fromkeys(self._delay_sum_by_type, 0.0)
        horizon = b - DEMAND_WINDOW_MS
        (services,) = self._services.columns
        for i in self._services.drop_through(horizon):
            self._service_sum_s -= services[i]
        if not self._services:
            self._service_sum_s = 0.0
        self._plated.prune(b, lookback_ms)
        self._unplated.prune(b)
        horizon = b - PLATE_HORIZON_MS
        while self._matched_max and self._matched_max[0][0] <= b - GHOST_WINDOW_MS:
            self._matched_max.popleft()
        if self._matched_max:
            # A plated vehicle waiting far longer than any matched one lately never comes:
            # its plate was misread at the barrier, and its departure counted as unmatched.
            horizon = max(horizon, b - self._tau_ms - self._ghost_age_ms())
        (plates,) = self._plate_order.columns
        for i in self._plate_order.drop_through(horizon):
            plate, ts_ms = plates[i], self._plate_order.times[i]
            if self._plates.get(plate) == ts_ms:
                del self._plates[plate]
                self._plates_closed += 1

    def _method(self, b: int) -> Method:
        if not self.config.has_detector:
            return "headway"
        if self._first_ms is None or b - self._first_ms < DEAD_DETECTOR_MS:
            return "input_output"
        arrived = self._arrivals.total - self._arrivals.count_at(b - DEAD_DETECTOR_MS)
        served = self._departures.total - self._departures.count_at(b - DEAD_DETECTOR_MS)
        dead = arrived == 0 and served >= DEAD_DETECTOR_MIN_DEPARTURES
        return "headway" if dead else "input_output"

    # ---- departures -----------------------------------------------------------------------

    def _process_departure(
        self,
        ts_ms: int,
        lane_id: str,
        payment: Payment,
        result: TxResult,
        vehicle_class: str,
        service_ms: int | None,
        plate_hash: str | None,
    ) -> None:
        lanes = self._lanes
        window = lanes.windows.get(lane_id)
        if window is None and lanes.known(lane_id):
            window = lanes.windows[lane_id]
        if service_ms is not None:
            service_s = service_ms / 1000.0
        else:
            lane_type = lanes.types.get(lane_id, "MIXED")
            typical_s = self.config.service.typical_s(lane_type, payment, result)
            service_s = typical_s if window is None else window.service_estimate_s(ts_ms, typical_s)
        self._departures.add(ts_ms)
        start_ms = ts_ms - round(service_s * 1000)
        delay_s = self._vehicle_delay_ms(start_ms, plate_hash) / 1000.0
        if window is not None:
            window.add(ts_ms, service_s, delay_s >= WAITED_MIN_S, service_ms is not None)
        lane_type = lanes.types.get(lane_id, "MIXED")
        self._delays.append2(ts_ms, delay_s, LANE_TYPES.index(lane_type))
        self._delay_sum_s += delay_s
        self._delay_sum_by_type[lane_type] += delay_s
        self._services.append(ts_ms, service_s)
        self._service_sum_s += service_s
        length = self._class_length.get(vehicle_class)
        if length is None:
            length = self.config.vehicle_lengths.of(vehicle_class)
            if len(self._class_length) < MAX_CLASSES:
                self._class_length[vehicle_class] = length
        self._mean_length_m += LENGTH_EWMA_ALPHA * (length - self._mean_length_m)
        self.departures_total += 1
        self.delay_total_s += delay_s

    def _vehicle_delay_ms(self, start_ms: int, plate_hash: str | None) -> int:
        if not self.config.has_detector:
            return 0
        if plate_hash is not None:
            plate = plate_key(plate_hash)
            detected_ms = self._plates.get(plate)
            if detected_ms is not None and detected_ms < start_ms:
                del self._plates[plate]
                self._plates_closed += 1
                travel_ms = start_ms - detected_ms
                self._learn_tau(travel_ms)
                self.plate_matches_total += 1
                delay_ms = max(travel_ms - self._tau_ms, 0)
                while self._matched_max and self._matched_max[-1][1] <= delay_ms:
                    self._matched_max.pop()
                self._matched_max.append((start_ms, delay_ms))
                return delay_ms + self._delay_behind_ms(detected_ms)
        # Without a match the vehicle is paired with the oldest unplated detection still
        # waiting: first come, first served among the vehicles whose plates were not read.
        arrived_ms = self._unplated.time_of(self._unplated_next)
        self._unplated_next += 1
        if arrived_ms is None:
            return 0
        if self.config.free_flow_s is None:
            self._learn_tau_from_isolated_pair(start_ms)
        return max(start_ms - arrived_ms - self._tau_ms, 0) + self._delay_behind_ms(arrived_ms)

    def _delay_behind_ms(self, detected_ms: int) -> int:
        """The part of a vehicle's delay spent queued upstream of the detector, measured by the
        detector farther upstream while the queue spilled back past this one."""
        return self._beyond.delay_behind_ms(detected_ms, self._tau_ms, WAIT_WINDOW_MS)

    def _ghost_age_ms(self) -> int:
        # Generous: waits grow during a surge, and manual lanes keep some far longer.
        longest = self._matched_max[0][1] if self._matched_max else 0
        return max(GHOST_MIN_AGE_MS, GHOST_AGE_FACTOR * longest)

    def _learn_tau(self, travel_ms: int) -> None:
        # Only free-flow trips measure τ; a queued vehicle's travel time includes its wait.
        if self.config.free_flow_s is not None or self._last_queue_veh >= FREE_FLOW_QUEUE_VEH:
            return
        self._tau_samples.append(travel_ms)
        if len(self._tau_samples) >= MIN_TAU_SAMPLES:
            ordered = sorted(self._tau_samples)
            # The lower quartile: a free-flow trip can still wait behind a vehicle in service.
            self._tau_ms = ordered[len(ordered) // 4]

    def _learn_tau_from_isolated_pair(self, start_ms: int) -> None:
        # At low flow, one detection followed by one service start, with nothing else around
        # either, is the same vehicle: its travel time is a τ sample without any plate.
        gap_ms = max(4 * self._tau_ms, 60_000)
        previous = self._departures.count_at(start_ms - gap_ms)
        if self._departures.total - previous != 1:
            return
        arrivals = self._arrivals
        if arrivals.count_at(start_ms) - arrivals.count_at(start_ms - gap_ms) != 1:
            return
        if arrivals.count_at(start_ms - gap_ms) != arrivals.count_at(start_ms - 2 * gap_ms):
            return
        detected_ms = arrivals.time_of(arrivals.count_at(start_ms))
        if detected_ms is not None and self._last_queue_veh < FREE_FLOW_QUEUE_VEH:
            self._learn_tau(start_ms - detected_ms)

    # ---- the queue ------------------------------------------------------------------------

    def _io_queue(self, b: int) -> float:
        due_at = b - self._tau_ms
        in_system = self._arrivals.count_at(due_at) - self._offset - self._departures.total
        plated_waiting = max(self._plated.count_at(due_at) - self._plates_closed, 0)
        if in_system < plated_waiting:
            # Vehicles known by plate to be due and not yet served are there whatever the
            # detector counted: it missed some. Re-anchor (plates or not, never below 0).
            missed = plated_waiting - in_system
            self._offset -= missed
            self._missed_found_ms = b
            self._missed_new += missed
            self._unplated_next = max(self._unplated_next - math.ceil(missed), 1)
            in_system = float(plated_waiting)
        if in_system > 0 and plated_waiting == 0 and self._observed_empty(b, in_system):
            self._drop_unplated(in_system)
            in_system = 0.0
        else:
            unplated_waiting = in_system - plated_waiting
            dropped = self._drop_unplated_ghosts(due_at, unplated_waiting)
            if dropped == 0:
                dropped = self._drop_beyond_plate_share(b, plated_waiting, unplated_waiting)
            if dropped == 0:
                dropped = self._drop_unseen_by_lanes(b, unplated_waiting)
            in_system -= dropped
        return max(in_system - self._lanes.in_service(b, in_system, self._first_ms or b), 0.0)

    def _drop_unplated(self, vehicles: float) -> None:
        self._offset += vehicles
        self._unplated_next += round(vehicles)
        self._phantoms_new += vehicles

    def _drop_unplated_ghosts(self, due_at: int, unplated_waiting: float) -> float:
        # Only plate matches say how long vehicles wait here; without them nobody is a ghost.
        if not self._matched_max or unplated_waiting < 1:
            return 0.0
        # The unplated vehicles still waiting are taken to be the latest detected ones.
        due = self._unplated.count_at(due_at)
        oldest_ms = self._unplated.time_of(max(due - math.floor(unplated_waiting) + 1, 1))
        if oldest_ms is None or due_at - oldest_ms <= self._ghost_age_ms():
            return 0.0
        # A detection older than any plausible wait is a phantom (a double count): forget one
        # per boundary, so that a real but unusually long wait costs little.
        self._drop_unplated(1.0)
        return 1.0

    def _drop_beyond_plate_share(
        self, b: int, plated_waiting: float, unplated_waiting: float
    ) -> float:
        """Forget one unplated vehicle when far more of them wait than plates go unread.

        The camera misses a plate at random, so among the vehicles waiting the unplated ones
        are about the unread share of the plated ones. Missed detections of plated vehicles
        are put back by the plates (the floor in `_io_queue`); double counts carry no plate
        and would otherwise pile up among the unplated until a ghost's age or a free moment.
        """
        if unplated_waiting < 1:
            return 0.0
        since = b - PLATE_SHARE_WINDOW_MS
        detected = self._arrivals.count_at(b) - self._arrivals.count_at(since)
        plated = self._plated.count_at(b) - self._plated.count_at(since)
        if detected < PLATE_SHARE_MIN_DETECTIONS or plated <= 0:
            return 0.0
        read = min(plated / detected, 1.0)
        # Unread vehicles among those waiting, given the read ones: a negative binomial.
        n = plated_waiting + 1.0
        expected = n * (1.0 - read) / read
        spread = math.sqrt(n * (1.0 - read)) / read
        if unplated_waiting <= expected + PLATE_SHARE_SIGMAS * spread:
            return 0.0
        self._drop_unplated(1.0)
        return 1.0

    def _drop_unseen_by_lanes(self, b: int, unplated_waiting: float) -> float:
        """Forget one unplated vehicle the lanes say was never there (a double count).

        At a moment when every lane in use stood free, nobody waited: vehicles counted as
        due then and not yet left were phantoms. Plates catch them too (ghosts); this needs
        none, and unlike an empty approach it comes in any traffic that leaves all lanes
        free at once now and then. The moment must also leave τ's spread to the vehicles
        last due, or one a little slower than τ, still on its way, would be taken for a
        phantom. One per output, like ghosts.
        """
        if unplated_waiting < 1:
            return 0.0
        moment = self._idle_moment(b)
        if moment is None:
            return 0.0
        t, idle_lanes = moment
        in_system_then = (
            self._arrivals.count_at(t - self._tau_ms) - self._offset - self._departures.count_at(t)
        )
        if in_system_then - (self._lanes.open_count - idle_lanes) < 1:
            return 0.0
        self._drop_unplated(1.0)
        return 1.0

    def _idle_moment(self, b: int) -> tuple[int, int] | None:
        """The latest time, within the count curves' reach, at which every open lane in use
        was seen standing free between two of its departures, with no detection due in the
        spread of τ before it; and how many lanes those are.

        Only spells closed by a later service start count: a lane silent since its last
        departure may be stalled with vehicles trapped behind it. A lane silent for longer
        than the lookback is not in use and constrains nothing. Moments before missed
        detections were last put back are not read: the count then would include them.
        """
        in_use_since = b - IDLE_MOMENT_LOOKBACK_MS
        oldest = max(in_use_since, self._missed_found_ms)
        windows = self._lanes.in_use_windows(in_use_since)
        if not windows:
            return None
        tau_ms = self._tau_ms
        spread_ms = max(IDLE_MOMENT_SPREAD_MIN_MS, tau_ms // 4)
        t = b
        while True:
            moved = True
            while moved:
                moved = False
                for window in windows:
                    idle_at = window.idle_at_or_before(t)
                    if idle_at < oldest:
                        return None
                    if idle_at < t:
                        t = idle_at
                        moved = True
            # Every lane stood free from the latest of their spells' starts to t.
            free_from = max(window.idle_since(t) for window in windows)
            while t >= free_from:
                detected = self._arrivals.latest_at(t - tau_ms)
                if detected is None or detected <= t - tau_ms - spread_ms:
                    return t, len(windows)
                t = detected + tau_ms - 1
            t = free_from - 1

    def _observed_empty(self, b: int, in_system: float) -> bool:
        if self._lanes.open_count == 0:
            return False
        # The lanes would have served a queue of this size by now: a silence shorter than
        # that is a stall (or a spilled-back detector), not an empty approach.
        backlog_s = in_system / self._lanes.open_count * self._mean_service_s()
        quiet_ms = round((self.config.empty_after_s + backlog_s) * 1000)
        last_departure = self._departures.last_time()
        if last_departure is not None and last_departure > b - quiet_ms:
            return False
        # Nobody due since: a wait of a full queue can outlast the count curves' lookback.
        due_at = b - self._tau_ms
        latest = self._arrivals.latest_at(due_at)
        return latest is None or latest <= due_at - quiet_ms

    def _spillback_check(
        self, b: int, queue_veh: float, method: Method, open_lanes: int
    ) -> tuple[float, float, float]:
        return self._beyond.check(
            b,
            queue_veh,
            method,
            open_lanes,
            self._lanes.standing_lanes(
                self.config.queue_lanes, self._delay_sum_by_type, self._delay_sum_s
            ),
            self._mean_length_m,
            self._tau_ms,
            self._first_ms or b,
            self._departures_per_s(b),
        )

    def _departures_per_s(self, b: int) -> float:
        served = self._departures.total - self._departures.count_at(b - RATE_WINDOW_MS)
        return served / (RATE_WINDOW_MS / 1000)

    # ---- alerts ---------------------------------------------------------------------------

    def _mean_service_s(self) -> float:
        if self._services:
            return self._service_sum_s / len(self._services)
        return self._lanes.typical_service_s()

    def _demand_per_min(self, b: int) -> float:
        span_ms = min(DEMAND_WINDOW_MS, max(b - (self._first_ms or b), BOUNDARY_MS))
        arrived = self._arrivals.total - self._arrivals.count_at(b - span_ms)
        served = self._departures.total - self._departures.count_at(b - span_ms)
        far = self._beyond.far_crossings_since(b - span_ms)
        if far is not None:
            # Past a queue that holds the near detector, the far one still sees the demand.
            arrived = max(arrived, far)
        # A queue or a dead detector can hide demand from one curve, never from both.
        return max(arrived, served) * 60_000.0 / span_ms

    def _evidence(self, estimate: QueueEstimate, b: int) -> tuple[dict[str, EvidenceValue], str]:
        thresholds = self.config.thresholds
        demand = self._demand_per_min(b)
        service_s = self._mean_service_s()
        advice = recommend_lanes(
            demand,
            service_s,
            estimate.open_lanes,
            len(self._lanes.types),
            thresholds.target_utilisation,
        )
        evidence: dict[str, EvidenceValue] = {
            "ts": b,
            "queue_veh": estimate.queue_veh,
            "queue_m": estimate.queue_m,
            "wait_s": estimate.wait_s,
            "level": estimate.level,
            "spillback": estimate.spillback,
            # The part of queue_veh beyond the detector, and whether a detector farther up
            # counted it (else it is extrapolated demand).
            "hidden_queue_veh": round(self._beyond.spill.hidden_veh, 1),
            "hidden_queue_measured": self._beyond.measured,
            "method": estimate.method,
            "open_lanes": estimate.open_lanes,
            "configured_lanes": len(self._lanes.types),
            "arrivals_per_min": estimate.arrivals_per_min,
            "departures_per_min": estimate.departures_per_min,
            "demand_per_min": round(demand, 2),
            "mean_service_s": round(service_s, 2),
            "utilisation": round(min(advice.utilisation, 99.0), 3),
            "lanes_needed": advice.lanes_needed,
            "extra_lanes": advice.extra_lanes,
        }
        return evidence, advice.text(thresholds.target_utilisation)

    def _alert_step(self, estimate: QueueEstimate, b: int) -> None:
        hysteresis = self._hysteresis
        transition = hysteresis.step(b, estimate.level)
        if transition is None:
            return
        evidence, recommendation = self._evidence(estimate, b)
        if transition == "resolve":
            if self._firing is not None:
                ended_at = hysteresis.calm_since_ms if hysteresis.calm_since_ms is not None else b
                self._out_alerts.append(self._firing.resolved(ended_at, evidence))
            self._firing = None
            hysteresis.reset_episode()
            return
        assert hysteresis.onset_ms is not None  # set on the way to every raise
        self._firing = queue_congestion_alert(
            plaza_id=self.config.plaza_id,
            direction=self.config.direction,
            started_at=hysteresis.onset_ms,
            severity=hysteresis.severity,
            queue_veh=estimate.queue_veh,
            queue_m=estimate.queue_m,
            wait_s=estimate.wait_s,
            open_lanes=estimate.open_lanes,
            level=estimate.level,
            spillback=estimate.spillback,
            evidence=evidence,
            recommendation=recommendation,
        )
        self._out_alerts.append(self._firing)

    # ---- introspection --------------------------------------------------------------------

    @property
    def tau_s(self) -> float:
        """The free-flow time from detector to barrier in use (configured or learned)."""
        return self._tau_ms / 1000.0

    @property
    def open_lanes(self) -> int:
        """Lanes open now."""
        return self._lanes.open_count
