"""Lane health of SPEC.md §4.2: the event-time lane checks behind one entry point.

`LaneHealth` routes events to ETC_LANE_DEGRADED (`etc_health`) and LANE_STALLED
(`stall`). DATA_GAP runs on processing time and lives apart in `data_gap`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from mypy_extensions import mypyc_attr

from detectors.alerts import Alert
from detectors.data_gap import DataGapConfig, DataGapMonitor
from detectors.etc_health import EtcHealthConfig, EtcHealthMonitor, LaneKey, lane_subject
from detectors.stall import LaneStallMonitor, StallConfig
from tollmon.events import Event, LaneStatus, LaneTransaction

__all__ = [
    "DataGapConfig",
    "DataGapMonitor",
    "EtcHealthConfig",
    "EtcHealthMonitor",
    "LaneHealth",
    "LaneKey",
    "LaneStallMonitor",
    "StallConfig",
    "lane_subject",
]


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class LaneHealth:
    """ETC health and stall detection for many plazas, fed events in arrival order."""

    def __init__(
        self,
        initially_open: Iterable[LaneKey] = (),
        etc: EtcHealthConfig | None = None,
        stall: StallConfig | None = None,
        etc_overrides: Mapping[str, EtcHealthConfig] | None = None,
        stall_overrides: Mapping[str, StallConfig] | None = None,
    ) -> None:
        self.etc = EtcHealthMonitor(etc, etc_overrides)
        self.stall = LaneStallMonitor(stall, initially_open, stall_overrides)

    def on_event(self, event: Event) -> list[Alert]:
        """Take any input event; every event moves its plaza's event time on."""
        if isinstance(event, LaneTransaction):
            return self.etc.on_transaction(event) + self.stall.on_transaction(event)
        if isinstance(event, LaneStatus):
            return self.etc.advance(event.plaza_id, event.ts) + self.stall.on_lane_status(event)
        return self.advance(event.plaza_id, event.ts)

    def set_queue(self, plaza_id: str, direction: str, queue_veh: float, ts_ms: int) -> list[Alert]:
        """The approach's latest `queue_veh` from the queue estimator, at event time `ts_ms`."""
        return self.stall.set_queue(plaza_id, direction, queue_veh, ts_ms)

    def advance(self, plaza_id: str, ts_ms: int) -> list[Alert]:
        """Move a plaza's event time on without an event of its own (e.g. a 5 s tick)."""
        return self.etc.advance(plaza_id, ts_ms) + self.stall.advance(plaza_id, ts_ms)

    def failure_ratios(self, plaza_id: str) -> Iterator[tuple[LaneKey, float]]:
        """Windowed ETC failure ratio per lane of a plaza, for `tollmon_etc_failure_ratio`."""
        return self.etc.failure_ratios(plaza_id)

    def firing(self) -> Iterator[Alert]:
        """Every lane-health alert currently firing."""
        yield from self.etc.firing()
        yield from self.stall.firing()
