"""An approach's lanes at the barriers: which are open, how each served, how many serve now.

The queue estimator (detectors/queue.py) counts the vehicles at the barriers; this pool
says how many of them are in service rather than waiting. Lanes of one type (ETC, manual)
are a pool: while one of them serves vehicles that waited, each of them serves, but for a
lane whose next vehicle is still moving up to the barrier after the last one left, and a
type without a queue holds its utilisation's worth; otherwise all open lanes serve, less
those silent while vehicles outnumber them (ETC lanes idle beside a manual queue).
"""

from __future__ import annotations

from collections.abc import Iterable

from mypy_extensions import mypyc_attr

from detectors.approach import LaneType, ServiceTimes
from detectors.headway import LaneLoad, LaneServiceWindow

# A lane's departures are kept this long (its service, move-ups and idle spells).
LANE_WINDOW_MS = 120_000
# Lanes beyond this many, unknown to the network, are not added (a flood of bad lane ids).
MAX_LANES = 64
# A lane silent for this many of its service times, while vehicles outnumber the lanes,
# is idle, not serving.
IDLE_SERVICE_FACTOR = 2.0
# Rates over a few seconds of history would call one departure a saturated lane.
HEADWAY_MIN_SPAN_S = 60.0


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class LanePool:
    """The lanes of one approach, (lane, type) pairs; `step_ms` is how often they are read
    (the output period)."""

    def __init__(
        self, lanes: Iterable[tuple[str, LaneType]], service: ServiceTimes, step_ms: int
    ) -> None:
        self.types: dict[str, LaneType] = dict(lanes)
        self.open: dict[str, bool] = dict.fromkeys(self.types, True)
        self.open_count = len(self.open)
        self.windows: dict[str, LaneServiceWindow] = {
            lane: LaneServiceWindow(LANE_WINDOW_MS / 1000) for lane in self.types
        }
        self._service = service
        self._step_ms = step_ms
        # Since when the vehicles at the barriers outnumber the open lanes, if they do.
        self._saturated_since: int | None = None

    def known(self, lane_id: str) -> bool:
        """Whether the lane is counted; a lane missing from the network is added as an open
        mixed lane (it still serves vehicles), up to `MAX_LANES`."""
        if lane_id in self.types:
            return True
        if len(self.types) >= MAX_LANES:
            return False
        self.types[lane_id] = "MIXED"
        self.open[lane_id] = True
        self.open_count += 1
        self.windows[lane_id] = LaneServiceWindow(LANE_WINDOW_MS / 1000)
        return True

    def set_open(self, lane_id: str, is_open: bool) -> None:
        """A lane opened, or closed (or faulted)."""
        if self.known(lane_id):
            self.open[lane_id] = is_open
            self.open_count = sum(self.open.values())

    def in_use_windows(self, since_ms: int) -> list[LaneServiceWindow]:
        """The open lanes' windows with a departure at or after `since_ms`."""
        windows = []
        for lane, is_open in self.open.items():
            if is_open:
                window = self.windows[lane]
                last = window.last_departure_ms
                if last is not None and last >= since_ms:
                    windows.append(window)
        return windows

    def in_service(self, b: int, in_system: float, first_ms: int) -> float:
        """How many of `in_system` vehicles at the barriers are in service at boundary `b`
        (the rest wait); `first_ms` is when the approach's input began."""
        open_lanes = self.open_count
        if in_system < open_lanes:
            self._saturated_since = None
        elif self._saturated_since is None:
            self._saturated_since = b
        queueing = self._queueing_types(b)
        if queueing:
            # Drivers pick the shortest queue among the lanes of their payment type, so the
            # lanes of one type are a pool: with a queue at one, all of them serve (unless
            # idle), except a lane whose last vehicle left less than a move-up ago: the
            # next one is still pulling up to the barrier, due but not in service. The
            # lanes of a type without a queue hold, on average, their utilisation's worth.
            observed_s = max((b - first_ms) / 1000.0, HEADWAY_MIN_SPAN_S)
            move_up_ms = self._move_up_ms(queueing)
            busy = 0.0
            for lane, is_open in self.open.items():
                if not is_open:
                    continue
                window = self.windows[lane]
                window.prune(b)
                lane_type = self.types[lane]
                if lane_type in queueing and not self._idle(b, lane, window):
                    last = window.last_departure_ms
                    if last is None or b - last >= move_up_ms[lane_type]:
                        busy += 1.0
                else:
                    busy += window.in_service(observed_s)
            return min(in_system, busy)
        if in_system < open_lanes:
            return in_system
        # Lanes of one approach are a pool only for the vehicles that may use them: manual
        # lanes can queue while ETC lanes idle. A lane that has served nobody for a couple of
        # its service times since the vehicles outnumbered the lanes is idle, not serving.
        idle = 0
        for lane, is_open in self.open.items():
            if is_open and self._idle(b, lane, self.windows[lane]):
                idle += 1
        return min(in_system, float(max(open_lanes - idle, 1)))

    def loads(self, b: int, first_ms: int) -> list[LaneLoad]:
        """Each open lane's recent load, for the headway estimate (no detector counts)."""
        observed_s = max((b - first_ms) / 1000.0, HEADWAY_MIN_SPAN_S)
        loads = []
        for lane, is_open in self.open.items():
            if is_open:
                window = self.windows[lane]
                window.prune(b)
                loads.append(window.load(observed_s, b))
        return loads

    def standing_lanes(
        self, road_lanes: int | None, delay_by_type: dict[LaneType, float], delay_s: float
    ) -> float:
        """Approach lanes over which the queue's length spreads, for its length in metres:
        `road_lanes` configured (else the open lanes), given the recent delay by lane type
        and in all."""
        open_lanes = self.open_count
        if road_lanes is None:
            return float(max(open_lanes, 1))
        if delay_s <= 0:
            return float(road_lanes)
        # Drivers sort by payment type well upstream, so the queue of the most delayed lane type
        # stands in that type's share of the approach lanes and reaches the detector first.
        stand = float(road_lanes)
        for lane_type, type_delay_s in delay_by_type.items():
            share_of_queue = type_delay_s / delay_s
            type_lanes = sum(
                1 for lane, t in self.types.items() if t == lane_type and self.open[lane]
            )
            if share_of_queue > 0 and type_lanes > 0:
                share_of_road = type_lanes / max(open_lanes, 1)
                stand = min(stand, road_lanes * share_of_road / share_of_queue)
        return max(stand, 1.0)

    def typical_service_s(self) -> float:
        """The configured service time averaged over the lanes, before any was measured."""
        types = list(self.types.values())
        return sum(self._service.of_lane(t) for t in types) / len(types)

    def _idle(self, b: int, lane: str, window: LaneServiceWindow) -> bool:
        """Whether a lane has served nobody for a couple of its service times since the
        vehicles outnumbered the lanes (`_saturated_since`, set)."""
        last = window.last_departure_ms
        since = self._saturated_since or b
        if last is not None:
            since = max(last, since)
        return b - since > self._idle_limit_ms(lane, window)

    def _move_up_ms(self, types: set[LaneType]) -> dict[LaneType, float]:
        """Per lane type, how long a queued vehicle takes to pull up to the barrier once the
        one before it has left: the shortest of the type's recent move-ups (a vehicle that
        reached an idle lane just after its last departure looks queued too, later)."""
        move_up_ms: dict[LaneType, float] = {}
        for lane_type in types:
            move_ups: list[float] = []
            for lane, is_open in self.open.items():
                if is_open and self.types[lane] == lane_type:
                    self.windows[lane].move_ups_s(move_ups)
            move_up_ms[lane_type] = min(move_ups) * 1000 if move_ups else 0.0
        return move_up_ms

    def _queueing_types(self, b: int) -> set[LaneType]:
        """Lane types with an open lane now serving vehicles that had waited behind another."""
        types: set[LaneType] = set()
        for lane, is_open in self.open.items():
            if not is_open:
                continue
            window = self.windows[lane]
            last = window.last_departure_ms
            if (
                window.last_queued
                and last is not None
                and b - last <= self._idle_limit_ms(lane, window)
            ):
                types.add(self.types[lane])
        return types

    def _idle_limit_ms(self, lane: str, window: LaneServiceWindow) -> float:
        if window.departures:
            service_s = window.service_s / window.departures
        else:
            service_s = self._service.of_lane(self.types[lane])
        # Outputs come every step, so a lane's last departure is up to one step old when read.
        return IDLE_SERVICE_FACTOR * service_s * 1000 + self._step_ms
