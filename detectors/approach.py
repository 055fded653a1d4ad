"""What the queue estimator knows about one approach (plaza × direction), SPEC.md §3 and §4.1."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mypy_extensions import mypyc_attr

from detectors.congestion import CongestionThresholds
from tollmon.events import Direction, Payment, TxResult

LaneType = Literal["ETC", "MTC", "MIXED"]


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class VehicleLengths:
    """Queue metres per vehicle (length plus gap) by JT/T 489 class letter K, H, Z."""

    passenger_m: float = 7.5
    truck_m: float = 15.0
    special_m: float = 12.0

    @classmethod
    def from_letters(cls, lengths: Mapping[str, float]) -> VehicleLengths:
        """From the network's `vehicle_length_m: {K: .., H: .., Z: ..}` (missing → default)."""
        base = cls()
        return cls(
            passenger_m=float(lengths.get("K", base.passenger_m)),
            truck_m=float(lengths.get("H", base.truck_m)),
            special_m=float(lengths.get("Z", base.special_m)),
        )

    def of(self, vehicle_class: str) -> float:
        """The queue metres of one vehicle of this class (e.g. "H3")."""
        letter = vehicle_class[:1]
        if letter == "H":
            return self.truck_m
        if letter == "Z":
            return self.special_m
        return self.passenger_m


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class ServiceTimes:
    """Typical barrier service seconds by lane type, for departures that do not report it."""

    etc_s: float = 3.0
    mtc_s: float = 14.0
    mixed_s: float = 8.0

    def typical_s(self, lane_type: LaneType, payment: Payment, result: TxResult) -> float:
        """Expected service of one transaction: failed ETC and refusals are handled by hand."""
        if result != "OK" or payment == "MTC":
            return self.mtc_s
        return self.etc_s if lane_type == "ETC" else self.mixed_s

    def of_lane(self, lane_type: LaneType) -> float:
        """Typical service of a lane type when nothing else is known."""
        return {"ETC": self.etc_s, "MTC": self.mtc_s}.get(lane_type, self.mixed_s)


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class UpstreamDetector:
    """A detector (or a cross-section of lane detectors) farther from the barriers than the
    approach's counting one: it sees the queue that spills back past that one."""

    detector_ids: frozenset[str]
    distance_m: float
    free_flow_s: float | None = None
    # Road lanes the queue stands in where it passes this detector; None: as at the near one.
    queue_lanes: int | None = None


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class ApproachConfig:
    """What the estimator needs to know about one plaza direction."""

    plaza_id: str
    direction: Direction
    lanes: tuple[tuple[str, LaneType], ...]
    # The approach detector; without it the headway method is used.
    distance_m: float | None = None
    free_flow_s: float | None = None
    vehicle_lengths: VehicleLengths = field(default_factory=VehicleLengths)
    service: ServiceTimes = field(default_factory=ServiceTimes)
    thresholds: CongestionThresholds = field(default_factory=CongestionThresholds)
    # Lanes the queue stands in at the detector; None: spread over the open lanes.
    queue_lanes: int | None = None
    # Prior for τ = distance / speed until it is learned (toll plaza approaches slow down).
    approach_speed_mps: float = 8.0
    # No departure and no arrival due for this long means the approach is empty.
    empty_after_s: float = 60.0
    # Detections of these detectors go to `upstream`; all others of the approach are counted.
    upstream: UpstreamDetector | None = None
    # Detectors between the two, configured and validated, whose detections are not used.
    unused_detector_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        problems = []
        if not self.lanes:
            problems.append("lanes: at least one lane is needed")
        if self.distance_m is not None and self.distance_m <= 0:
            problems.append("distance_m: must be positive")
        if self.free_flow_s is not None and self.free_flow_s <= 0:
            problems.append("free_flow_s: must be positive")
        if self.queue_lanes is not None and self.queue_lanes < 1:
            problems.append("queue_lanes: must be at least 1")
        if self.approach_speed_mps <= 0 or self.empty_after_s <= 0:
            problems.append("approach_speed_mps and empty_after_s: must be positive")
        up = self.upstream
        if up is not None:
            if self.distance_m is None or up.distance_m <= self.distance_m:
                problems.append("upstream.distance_m: must be farther than the counting detector")
            if up.free_flow_s is not None and up.free_flow_s <= 0:
                problems.append("upstream.free_flow_s: must be positive")
            if up.queue_lanes is not None and up.queue_lanes < 1:
                problems.append("upstream.queue_lanes: must be at least 1")
        if problems:
            raise ValueError(f"{self.subject}: " + "; ".join(problems))

    @property
    def subject(self) -> str:
        """The approach as named in alerts: `plaza/direction`."""
        return f"{self.plaza_id}/{self.direction}"

    @property
    def has_detector(self) -> bool:
        """Whether an approach detector counts arrivals (input-output method)."""
        return self.distance_m is not None
