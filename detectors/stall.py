"""LANE_STALLED of SPEC.md §4.2: an open lane that lets nobody through while vehicles wait.

A lane is stalled when it is OPEN, its approach has had a queue (at least
`min_queue_veh`) continuously, and no vehicle has left it, for `silence_s` of
event time. The silence is counted from the latest of: the lane's last
departure, its opening, and the moment the queue formed, so a lane idle for an
hour at night is not called stalled the moment one car turns up.

Lanes start in the state the caller gives (the initially open lanes, from the
network config); afterwards only lane_status events open or close them. Each
plaza keeps its own event-time clock: one plaza's feed running ahead must not
age another plaza's lanes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from detectors.alerts import Alert, EvidenceValue, Severity, new_alert
from detectors.etc_health import DIRECTION_ZH, LaneKey, lane_subject
from tollmon.events import LaneStatus, LaneTransaction


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class StallConfig:
    """Thresholds of LANE_STALLED; `silence_s` is SPEC.md §4.2's 120 s."""

    silence_s: float = 120.0
    min_queue_veh: float = 1.0
    # A lane dead for 10 min with a queue is a plaza-level problem, worth a page.
    critical_after_s: float = 600.0


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(slots=True)
class _Lane:
    direction: str
    lane_id: str
    open: bool
    last_progress_ms: int | None = None  # last departure or opening
    last_departure_ms: int | None = None
    alert: Alert | None = None
    scheduled_ms: int | None = None  # due time of this lane's live heap entry


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(slots=True)
class _Approach:
    queue_veh: float = 0.0
    queue_since_ms: int | None = None
    lanes: dict[str, _Lane] = field(default_factory=dict)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(slots=True)
class _Plaza:
    config: StallConfig
    clock_ms: int = 0
    approaches: dict[str, _Approach] = field(default_factory=dict)
    # (due_ms, tie-breaker, direction, lane_id); at most one live entry per lane,
    # stale ones are recognised by `_Lane.scheduled_ms` and skipped.
    due: list[tuple[int, int, str, str]] = field(default_factory=list)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class LaneStallMonitor:
    """Raises LANE_STALLED for open lanes without departures while a queue waits."""

    def __init__(
        self,
        config: StallConfig | None = None,
        initially_open: Iterable[LaneKey] = (),
        plaza_overrides: Mapping[str, StallConfig] | None = None,
    ) -> None:
        self._config = config or StallConfig()
        self._overrides = dict(plaza_overrides or {})
        self._plazas: dict[str, _Plaza] = {}
        self._tie = itertools.count()
        for plaza_id, direction, lane_id in initially_open:
            self._lane(plaza_id, direction, lane_id).open = True

    def on_transaction(self, tx: LaneTransaction) -> list[Alert]:
        """A departure: the lane moves again, so a stall on it resolves."""
        alerts = self.advance(tx.plaza_id, tx.ts)
        lane = self._lane(tx.plaza_id, tx.direction, tx.lane_id)
        lane.last_departure_ms = _latest(lane.last_departure_ms, tx.ts)
        lane.last_progress_ms = _latest(lane.last_progress_ms, tx.ts)
        if lane.alert is not None:
            alerts.extend(self._resolve(lane, tx.ts, "departure"))
        self._schedule(tx.plaza_id, lane)
        return alerts

    def on_lane_status(self, status: LaneStatus) -> list[Alert]:
        """A lane opened, closed or faulted; a closed lane is no longer stalled."""
        alerts = self.advance(status.plaza_id, status.ts)
        lane = self._lane(status.plaza_id, status.direction, status.lane_id)
        was_open, lane.open = lane.open, status.state == "OPEN"
        if lane.open and not was_open:
            lane.last_progress_ms = _latest(lane.last_progress_ms, status.ts)
            self._schedule(status.plaza_id, lane)
        elif not lane.open:
            alerts.extend(self._resolve(lane, status.ts, status.state.lower()))
        return alerts

    def set_queue(self, plaza_id: str, direction: str, queue_veh: float, ts_ms: int) -> list[Alert]:
        """The approach's latest queue estimate (SPEC §4.1 `queue_veh`) at event time `ts_ms`."""
        alerts = self.advance(plaza_id, ts_ms)
        plaza = self._plaza(plaza_id)
        approach = _approach(plaza, direction)
        approach.queue_veh = queue_veh
        if queue_veh >= plaza.config.min_queue_veh:
            if approach.queue_since_ms is None:
                approach.queue_since_ms = ts_ms
                for lane in approach.lanes.values():
                    self._schedule(plaza_id, lane)
        elif approach.queue_since_ms is not None:
            approach.queue_since_ms = None
            for lane in approach.lanes.values():
                alerts.extend(self._resolve(lane, ts_ms, "queue_cleared"))
        return alerts

    def advance(self, plaza_id: str, ts_ms: int) -> list[Alert]:
        """Move a plaza's event time to `ts_ms`; returns stalls that became due (or escalated)."""
        plaza = self._plaza(plaza_id)
        plaza.clock_ms = max(plaza.clock_ms, ts_ms)
        alerts: list[Alert] = []
        while plaza.due and plaza.due[0][0] <= plaza.clock_ms:
            due_ms, _, direction, lane_id = heapq.heappop(plaza.due)
            approach = plaza.approaches[direction]
            lane = approach.lanes[lane_id]
            if lane.scheduled_ms != due_ms:
                continue
            lane.scheduled_ms = None
            next_ms = self._next_check(plaza.config, approach, lane)
            if next_ms is not None and next_ms <= plaza.clock_ms:
                alerts.append(self._fire_or_escalate(plaza_id, plaza, approach, lane))
            self._schedule(plaza_id, lane)
        return alerts

    def firing(self) -> Iterator[Alert]:
        """The alerts currently firing (for re-sending and for the firing gauge)."""
        for plaza in self._plazas.values():
            for approach in plaza.approaches.values():
                for lane in approach.lanes.values():
                    if lane.alert is not None:
                        yield lane.alert

    def _plaza(self, plaza_id: str) -> _Plaza:
        plaza = self._plazas.get(plaza_id)
        if plaza is None:
            plaza = _Plaza(self._overrides.get(plaza_id, self._config))
            self._plazas[plaza_id] = plaza
        return plaza

    def _lane(self, plaza_id: str, direction: str, lane_id: str) -> _Lane:
        approach = _approach(self._plaza(plaza_id), direction)
        lane = approach.lanes.get(lane_id)
        if lane is None:
            lane = _Lane(direction, lane_id, open=False)
            approach.lanes[lane_id] = lane
        return lane

    @staticmethod
    def _stalled_since(approach: _Approach, lane: _Lane) -> int | None:
        if not lane.open or approach.queue_since_ms is None:
            return None
        if lane.last_progress_ms is None:
            return approach.queue_since_ms
        return max(lane.last_progress_ms, approach.queue_since_ms)

    def _next_check(self, config: StallConfig, approach: _Approach, lane: _Lane) -> int | None:
        """When this lane next needs looking at: its stall deadline, or its escalation."""
        if lane.alert is not None:
            if lane.alert.severity == "critical":
                return None
            return lane.alert.started_at + int(config.critical_after_s * 1000)
        since = self._stalled_since(approach, lane)
        return None if since is None else since + int(config.silence_s * 1000)

    def _schedule(self, plaza_id: str, lane: _Lane) -> None:
        plaza = self._plazas[plaza_id]
        due_ms = self._next_check(plaza.config, plaza.approaches[lane.direction], lane)
        # Deadlines mostly move later (a departure); the earlier entry then pops,
        # finds the lane not yet due and re-schedules, which avoids a push per event.
        if due_ms is None or (lane.scheduled_ms is not None and lane.scheduled_ms <= due_ms):
            return
        lane.scheduled_ms = due_ms
        heapq.heappush(plaza.due, (due_ms, next(self._tie), lane.direction, lane.lane_id))

    def _fire_or_escalate(
        self, plaza_id: str, plaza: _Plaza, approach: _Approach, lane: _Lane
    ) -> Alert:
        if lane.alert is None:
            since = self._stalled_since(approach, lane)
            assert since is not None  # _next_check returned a deadline, so it has one
            lane.alert = _stall_alert(plaza_id, plaza, approach, lane, since, "warning")
        else:
            lane.alert = _stall_alert(
                plaza_id, plaza, approach, lane, lane.alert.started_at, "critical"
            )
        return lane.alert

    @staticmethod
    def _resolve(lane: _Lane, ts_ms: int, cause: str) -> list[Alert]:
        if lane.alert is None:
            return []
        evidence = {**lane.alert.evidence, "resolved_by": cause}
        resolved = lane.alert.resolved(ts_ms, evidence)
        lane.alert = None
        return [resolved]


def _approach(plaza: _Plaza, direction: str) -> _Approach:
    # Once per event: look up first, so no _Approach is built only to be thrown away.
    approach = plaza.approaches.get(direction)
    if approach is None:
        approach = plaza.approaches[direction] = _Approach()
    return approach


def _latest(known_ms: int | None, ts_ms: int) -> int:
    # A late (out-of-order) departure must not move the lane's progress back.
    return ts_ms if known_ms is None else max(known_ms, ts_ms)


def _stall_alert(
    plaza_id: str,
    plaza: _Plaza,
    approach: _Approach,
    lane: _Lane,
    started_at: int,
    severity: Severity,
) -> Alert:
    silent_s = (plaza.clock_ms - started_at) / 1000
    lane_label = f"{lane.direction} lane {lane.lane_id}"
    evidence: dict[str, EvidenceValue] = {
        "direction": lane.direction,
        "lane_id": lane.lane_id,
        "silent_s": round(silent_s, 1),
        "queue_veh": round(approach.queue_veh, 1),
        "last_departure_at": lane.last_departure_ms,
    }
    # An escalation re-uses the alert id (same condition, same start) with the
    # higher severity, so consumers see one incident that got worse.
    return new_alert(
        kind="LANE_STALLED",
        severity=severity,
        plaza_id=plaza_id,
        subject=lane_subject(plaza_id, lane.direction, lane.lane_id),
        started_at=started_at,
        summary_zh=(
            f"{plaza_id} {DIRECTION_ZH.get(lane.direction, lane.direction)}{lane.lane_id}号车道"
            f"已{silent_s:.0f}秒无车辆通过，该方向仍有约{approach.queue_veh:.0f}辆车排队"
        ),
        summary_en=(
            f"{lane_label} at {plaza_id} has let no vehicle through for {silent_s:.0f} s "
            f"while about {approach.queue_veh:.0f} vehicles queue on the approach"
        ),
        evidence=evidence,
        recommendation=(
            f"立即检查{DIRECTION_ZH.get(lane.direction, lane.direction)}{lane.lane_id}号车道"
            "（栏杆、车道控制机、收费亭）；若不能马上恢复，关闭该车道（红灯）并加开其他车道。 / "
            f"Check {lane_label} now (barrier, lane controller, booth); if it cannot be "
            "cleared at once, close it (red lane signal) and open another lane."
        ),
    )
