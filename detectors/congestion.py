"""Congestion level, its hysteresis and the lane recommendation of SPEC.md §4.1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mypy_extensions import mypyc_attr

from detectors.alerts import Alert, EvidenceValue, Severity, new_alert

Transition = Literal["raise", "upgrade", "resolve"]

_LEVEL_NAMES_EN = ("free", "busy", "congested", "severe")
_LEVEL_NAMES_ZH = ("畅通", "繁忙", "拥堵", "严重拥堵")
_DIRECTION_ZH = {"entry": "入口", "exit": "出口"}


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class CongestionThresholds:
    """The §4.1 level and alert thresholds; field names match the network's `thresholds`."""

    busy_per_lane: float = 2.0
    congested_per_lane: float = 5.0
    severe_per_lane: float = 10.0
    congested_wait_s: float = 120.0
    severe_wait_s: float = 300.0
    congestion_raise_hold_s: float = 60.0
    congestion_resolve_hold_s: float = 120.0
    target_utilisation: float = 0.85


def congestion_level(
    queue_veh: float,
    wait_s: float,
    open_lanes: int,
    spillback: bool,
    thresholds: CongestionThresholds,
) -> int:
    """The level 0 free, 1 busy, 2 congested or 3 severe of one approach at one instant."""
    # With every lane closed the whole queue stands in front of one barrier, so divide by 1.
    per_lane = queue_veh / max(open_lanes, 1)
    if spillback or per_lane >= thresholds.severe_per_lane or wait_s >= thresholds.severe_wait_s:
        return 3
    if per_lane >= thresholds.congested_per_lane or wait_s >= thresholds.congested_wait_s:
        return 2
    if per_lane >= thresholds.busy_per_lane:
        return 1
    return 0


def lanes_needed(arrivals_per_min: float, mean_service_s: float, target_utilisation: float) -> int:
    """The fewest lanes (at least 1) whose utilisation λ·s/c stays strictly below the target."""
    if not 0 < target_utilisation <= 1:
        raise ValueError("target_utilisation must be in (0, 1]")
    offered_load = max(arrivals_per_min, 0.0) / 60.0 * max(mean_service_s, 0.0)
    lanes = max(1, math.ceil(offered_load / target_utilisation))
    # Float division can land a hair either side of an exact multiple; settle it by the rule.
    while offered_load / lanes >= target_utilisation:
        lanes += 1
    while lanes > 1 and offered_load / (lanes - 1) < target_utilisation:
        lanes -= 1
    return lanes


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class LaneRecommendation:
    """How many lanes the measured demand needs and how many more to open."""

    lanes_needed: int
    extra_lanes: int
    closed_lanes: int
    offered_load: float
    utilisation: float

    def text(self, target_utilisation: float) -> str:
        """The operator's instruction, in Chinese and English."""
        pct = f"{target_utilisation * 100:.0f} %"
        load = f"{self.offered_load:.2f} Erlang"
        if self.extra_lanes == 0:
            return (
                f"车道数已够（需要 {self.lanes_needed} 条，利用率 < {pct}），"
                "请检查收费效率、ETC 故障与车道设备。"
                f" Enough lanes are open ({self.lanes_needed} needed for utilisation < {pct},"
                f" load {load}); check service speed, ETC failures and lane equipment."
            )
        if self.extra_lanes <= self.closed_lanes:
            return (
                f"建议增开 {self.extra_lanes} 条车道（共需 {self.lanes_needed} 条，"
                f"利用率 < {pct}）。"
                f" Open {self.extra_lanes} more lane(s): {self.lanes_needed} needed for"
                f" utilisation < {pct} (load {load})."
            )
        short = self.extra_lanes - self.closed_lanes
        return (
            f"开放全部 {self.closed_lanes} 条关闭车道后仍缺 {short} 条，"
            "请加派人员提速并由路网调度分流。"
            f" Open all {self.closed_lanes} closed lane(s); still {short} short of the"
            f" {self.lanes_needed} needed for utilisation < {pct} (load {load}):"
            " add staff and ask network dispatch to divert traffic."
        )


def recommend_lanes(
    arrivals_per_min: float,
    mean_service_s: float,
    open_lanes: int,
    configured_lanes: int,
    target_utilisation: float,
) -> LaneRecommendation:
    """Lanes to open so that each lane's utilisation drops below the target."""
    needed = lanes_needed(arrivals_per_min, mean_service_s, target_utilisation)
    load = max(arrivals_per_min, 0.0) / 60.0 * max(mean_service_s, 0.0)
    return LaneRecommendation(
        lanes_needed=needed,
        extra_lanes=max(0, needed - open_lanes),
        closed_lanes=max(0, configured_lanes - open_lanes),
        offered_load=load,
        utilisation=load / open_lanes if open_lanes > 0 else math.inf,
    )


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class CongestionHysteresis:
    """Raise after level ≥ 2 is held, upgrade to critical at 3, resolve after level ≤ 1 is held."""

    __slots__ = (
        "_raise_hold_ms",
        "_resolve_hold_ms",
        "calm_since_ms",
        "firing",
        "onset_ms",
        "severity",
    )

    def __init__(self, thresholds: CongestionThresholds) -> None:
        self._raise_hold_ms = round(thresholds.congestion_raise_hold_s * 1000)
        self._resolve_hold_ms = round(thresholds.congestion_resolve_hold_s * 1000)
        # The start of the current episode: the first output at level ≥ 2; it names the alert.
        self.onset_ms: int | None = None
        self.calm_since_ms: int | None = None
        self.firing = False
        self.severity: Severity = "warning"

    def step(self, ts_ms: int, level: int) -> Transition | None:
        """Feed one output's level; say whether the alert must be raised, upgraded or resolved."""
        return self._while_firing(ts_ms, level) if self.firing else self._while_quiet(ts_ms, level)

    def _while_quiet(self, ts_ms: int, level: int) -> Transition | None:
        if level < 2:
            self.onset_ms = None
            return None
        if self.onset_ms is None:
            self.onset_ms = ts_ms
        if ts_ms - self.onset_ms < self._raise_hold_ms:
            return None
        self.firing = True
        self.severity = "critical" if level >= 3 else "warning"
        return "raise"

    def _while_firing(self, ts_ms: int, level: int) -> Transition | None:
        if level >= 2:
            self.calm_since_ms = None
            # Only upgrade: flapping between warning and critical would be an alert storm.
            if level >= 3 and self.severity == "warning":
                self.severity = "critical"
                return "upgrade"
            return None
        if self.calm_since_ms is None:
            self.calm_since_ms = ts_ms
        if ts_ms - self.calm_since_ms < self._resolve_hold_ms:
            return None
        self.firing = False
        return "resolve"

    def reset_episode(self) -> None:
        """Forget the finished episode once its resolve has been emitted."""
        self.onset_ms = None
        self.calm_since_ms = None
        self.severity = "warning"


def queue_congestion_alert(
    *,
    plaza_id: str,
    direction: str,
    started_at: int,
    severity: Severity,
    queue_veh: float,
    queue_m: float,
    wait_s: float,
    open_lanes: int,
    level: int,
    spillback: bool,
    evidence: dict[str, EvidenceValue],
    recommendation: str,
) -> Alert:
    """A firing QUEUE_CONGESTION alert for one approach, with summaries in Chinese and English."""
    level = min(max(level, 0), 3)
    spill_en = "; the queue reaches the approach detector" if spillback else ""
    spill_zh = "，排队已越过检测器" if spillback else ""
    summary_en = (
        f"{plaza_id} {direction}: {_LEVEL_NAMES_EN[level]} (level {level}), queue"
        f" {queue_veh:.0f} veh ({queue_m:.0f} m) on {open_lanes} open lane(s),"
        f" mean wait {wait_s:.0f} s{spill_en}."
    )
    summary_zh = (
        f"{plaza_id} {_DIRECTION_ZH.get(direction, direction)}：{_LEVEL_NAMES_ZH[level]}"
        f"（等级 {level}），排队 {queue_veh:.0f} 辆（{queue_m:.0f} 米），"
        f"开放车道 {open_lanes} 条，平均等待 {wait_s:.0f} 秒{spill_zh}。"
    )
    return new_alert(
        kind="QUEUE_CONGESTION",
        severity=severity,
        plaza_id=plaza_id,
        subject=f"{plaza_id}/{direction}",
        started_at=started_at,
        summary_zh=summary_zh,
        summary_en=summary_en,
        evidence=evidence,
        recommendation=recommendation,
    )
