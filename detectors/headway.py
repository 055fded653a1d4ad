"""Per-lane service statistics from departures, and the M/G/1 queue they imply (SPEC §4.1)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from mypy_extensions import mypyc_attr

from detectors.series import TimedSeries

# Utilisation measured at 1 means a lane never idled in the window: the queue behind it is
# unobservable from departures alone, so the P-K formula is evaluated at this cap instead of ∞.
MAX_HEADWAY_UTILISATION = 0.95
# A headway up to this multiple of the expected service time means the next vehicle was already
# waiting when the previous one left: the lane stayed busy (a saturation headway).
SATURATION_HEADWAY_FACTOR = 1.5
# A vehicle waiting behind the barrier needs a few seconds to pull up once the previous one
# leaves (toll booths: 2-4 s). A reported service that began no later than this after the previous
# departure was queued: the lane was busy for the whole headway, move-up included.
MOVE_UP_MAX_S = 5.0
# Idle spells are kept for this long (and at most this many per lane): long enough to find a
# moment when every lane of a wide plaza stood free, one of them idle since well before.
IDLE_SPELL_HORIZON_MS = 300_000
IDLE_SPELLS_KEPT = 16


def mg1_queue(
    arrivals_per_s: float, mean_service_s: float, service_scv: float, max_utilisation: float
) -> tuple[float, float]:
    """Pollaczek-Khinchine mean queue (excluding the vehicle in service) and mean wait in s."""
    if arrivals_per_s <= 0 or mean_service_s <= 0:
        return 0.0, 0.0
    rho = min(arrivals_per_s * mean_service_s, max_utilisation)
    queue = rho * rho * (1.0 + max(service_scv, 0.0)) / (2.0 * (1.0 - rho))
    # Little's law with the throughput the capped utilisation corresponds to.
    return queue, queue / (rho / mean_service_s)


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class LaneLoad:
    """One lane's recent departures: throughput, service moments and utilisation."""

    departures_per_s: float
    mean_service_s: float
    service_scv: float
    utilisation: float


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class LaneServiceWindow:
    """Departures of one lane over a sliding event-time window, with running service sums."""

    __slots__ = (
        "_busy_sum_s",
        "_departures",
        "_idle_spells",
        "_sum_s",
        "_sum_s2",
        "_window_ms",
        "last_departure_ms",
        "last_queued",
    )

    def __init__(self, window_s: float) -> None:
        self._window_ms = round(window_s * 1000)
        # Per departure: its service time, how long it kept the lane busy (s), and 1 if its
        # vehicle had waited behind the one before (else 0).
        self._departures = TimedSeries("ddb")
        self._busy_sum_s = 0.0
        self._sum_s = 0.0
        self._sum_s2 = 0.0
        self.last_departure_ms: int | None = None
        # Whether the latest departure's vehicle had waited behind the one before it.
        self.last_queued = False
        # The latest spells in which the lane was seen free with nobody pulling up to it, from
        # a departure to the next service start less a move-up: start, end, start, end, ...
        self._idle_spells = array("q")

    def service_estimate_s(self, ts_ms: int, typical_s: float) -> float:
        """The service time of a departure at ts_ms when the lane did not report it."""
        if self.last_departure_ms is not None:
            headway_s = (ts_ms - self.last_departure_ms) / 1000.0
            if 0 < headway_s <= SATURATION_HEADWAY_FACTOR * typical_s:
                # A saturation headway: this vehicle's service began as the previous one left.
                return headway_s
        return typical_s

    def add(
        self, ts_ms: int, service_s: float, waited: bool = False, measured: bool = True
    ) -> None:
        """Record one departure (event-time order) and how long it kept the lane busy.

        `waited`: the vehicle was due at the barrier before its service began (its delay,
        where known); with its service starting right after the previous departure, it was
        queued behind that vehicle. `measured`: the lane reported the service time (else it
        is an estimate, and the start of the service is uncertain by about as much again).
        """
        busy_s = service_s
        queued = False
        last = self.last_departure_ms
        if last is not None:
            headway_s = (ts_ms - last) / 1000.0
            if 0 < headway_s <= service_s + MOVE_UP_MAX_S:
                # Queued behind the previous vehicle: its move-up is part of the lane's cycle,
                # not idle time, or a saturated lane would look far from saturation.
                busy_s = headway_s
                queued = waited
            else:
                # The lane stood free between the two: nobody was waiting to pull up to it.
                margin_s = MOVE_UP_MAX_S + (0.0 if measured else service_s)
                until_ms = ts_ms - round((service_s + margin_s) * 1000)
                if until_ms > last:
                    spells = self._idle_spells
                    while spells and (
                        len(spells) >= 2 * IDLE_SPELLS_KEPT
                        or spells[1] < ts_ms - IDLE_SPELL_HORIZON_MS
                    ):
                        del spells[:2]
                    spells.append(last)
                    spells.append(until_ms)
        self._departures.append3(ts_ms, service_s, busy_s, 1 if queued else 0)
        self._sum_s += service_s
        self._sum_s2 += service_s * service_s
        self._busy_sum_s += busy_s
        if self.last_departure_ms is None or ts_ms > self.last_departure_ms:
            self.last_departure_ms = ts_ms
            self.last_queued = queued
        # Bounded memory whether or not anyone reads the window.
        if self._departures.oldest_ts() <= ts_ms - 2 * self._window_ms:
            self.prune(ts_ms - self._window_ms)

    def idle_since(self, t_ms: int) -> int:
        """When the latest spell covering t_ms began (-1 if none covers it)."""
        spells = self._idle_spells
        for i in range(len(spells) - 2, -1, -2):
            if spells[i] <= t_ms:
                return spells[i] if t_ms <= spells[i + 1] else -1
        return -1

    def idle_at_or_before(self, t_ms: int) -> int:
        """The latest time at or before t_ms at which the lane is known to have stood free
        with nobody pulling up to it, among its latest spells (-1 if none is that early)."""
        spells = self._idle_spells
        for i in range(len(spells) - 2, -1, -2):
            if spells[i] <= t_ms:
                return min(spells[i + 1], t_ms)
        return -1

    def prune(self, now_ms: int) -> None:
        """Forget departures older than the window."""
        horizon = now_ms - self._window_ms
        services, busy, _ = self._departures.columns
        for i in self._departures.drop_through(horizon):
            s = services[i]
            self._busy_sum_s -= busy[i]
            self._sum_s -= s
            self._sum_s2 -= s * s
        if not self._departures:
            # Running sums drift by rounding; an empty window is the moment to zero them exactly.
            self._sum_s = 0.0
            self._sum_s2 = 0.0
            self._busy_sum_s = 0.0

    @property
    def departures(self) -> int:
        """Departures in the window."""
        return len(self._departures)

    @property
    def service_s(self) -> float:
        """Seconds of service given in the window."""
        return self._sum_s

    @property
    def busy_s(self) -> float:
        """Seconds the lane was busy in the window: service plus the move-ups of queued vehicles."""
        return self._busy_sum_s

    def in_service(self, observed_s: float) -> float:
        """Vehicles in service at the lane on average over the window: service s per second."""
        span_s = min(observed_s, self._window_ms / 1000)
        return min(self._sum_s / span_s, 1.0) if span_s > 0 else 0.0

    def move_ups_s(self, into: list[float]) -> None:
        """Append the move-up of each queued vehicle in the window: the seconds from the
        previous departure to its own service start, in which it was due but not served."""
        services, busy, queued = self._departures.columns
        for i in self._departures.positions():
            if queued[i]:
                into.append(max(busy[i] - services[i], 0.0))

    def load(self, observed_s: float, now_ms: int) -> LaneLoad:
        """Throughput, service moments and utilisation over the observed part of the window."""
        span_ms = round(min(observed_s * 1000, self._window_ms))
        n = len(self._departures)
        if n == 0 or span_ms <= 0:
            return LaneLoad(0.0, 0.0, 0.0, 0.0)
        mean = self._sum_s / n
        variance = max(self._sum_s2 / n - mean * mean, 0.0)
        scv = variance / (mean * mean) if mean > 0 else 0.0
        # A queued vehicle occupies the lane for its move-up too: that is its effective service.
        cycle_s = self._busy_sum_s / n
        start_ms = now_ms - span_ms
        # Only the part of the oldest busy spell inside the window counts, or the utilisation
        # would jump by a whole cycle as departures enter and leave the window.
        first_busy_ms = self._departures.oldest(1) * 1000
        busy_ms = self._busy_sum_s * 1000 - min(
            max(start_ms - (self._departures.oldest_ts() - first_busy_ms), 0.0), first_busy_ms
        )
        end_ms = now_ms
        last = self.last_departure_ms
        if last is not None and now_ms - last <= cycle_s * 1000:
            # The next vehicle is most likely in service already: not idle time, just unseen.
            end_ms = last
        observed_ms = max(end_ms - start_ms, 1)
        rate = n * 1000 / span_ms
        return LaneLoad(rate, cycle_s, scv, min(max(busy_ms, 0.0) / observed_ms, 1.0))


def headway_queue(loads: list[LaneLoad]) -> tuple[float, float]:
    """Approach queue (sum of per-lane M/G/1 queues) and flow-weighted mean wait in s."""
    queue = 0.0
    flow = 0.0
    for lane in loads:
        if lane.departures_per_s <= 0:
            continue
        # Throughput under-states demand on a saturated lane; its measured utilisation does not.
        rate = max(lane.departures_per_s, lane.utilisation / lane.mean_service_s)
        lq, _ = mg1_queue(rate, lane.mean_service_s, lane.service_scv, MAX_HEADWAY_UTILISATION)
        queue += lq
        flow += lane.departures_per_s
    return queue, (queue / flow if flow > 0 else 0.0)
