"""Fake event timelines for the queue estimator's tests: real event structs, event time only."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from detectors.alerts import Alert
from detectors.queue import ApproachConfig, ApproachEstimator, LaneType, QueueEstimate
from tollmon.events import ApproachDetection, LaneState, LaneStatus, LaneTransaction, Payment

# A 5 s boundary, so that offsets in the tests read as seconds from the start of a scenario.
T0 = 1_700_000_000_000
PLAZA = "URC-E01"
_ids = itertools.count()

QueueEvent = ApproachDetection | LaneTransaction | LaneStatus
Lanes = tuple[tuple[str, LaneType], ...]


def at(seconds: float) -> int:
    """Epoch ms of a scenario time given in seconds."""
    return T0 + round(seconds * 1000)


def approach(
    lanes: Sequence[tuple[str, LaneType]] = (("01", "MTC"),),
    distance_m: float | None = 180.0,
    free_flow_s: float | None = 15.0,
    **options: object,
) -> ApproachConfig:
    """An entry approach of the test plaza."""
    return ApproachConfig(
        plaza_id=PLAZA,
        direction="entry",
        lanes=tuple(lanes),
        distance_m=distance_m,
        free_flow_s=free_flow_s,
        **options,  # type: ignore[arg-type]  # tests pass only ApproachConfig's own fields
    )


def arrival(
    seconds: float, count: int = 1, plate: str | None = None, detector: str = "D1"
) -> ApproachDetection:
    """Vehicles crossing an approach detector (the counting one, D1) at a scenario time."""
    return ApproachDetection(
        event_id=f"a{next(_ids)}",
        ts=at(seconds),
        plaza_id=PLAZA,
        direction="entry",
        detector_id=detector,
        count=count,
        plate_hash=plate,
    )


def departure(
    seconds: float,
    lane: str = "01",
    service_s: float | None = 10.0,
    plate: str | None = None,
    payment: Payment = "MTC",
    vehicle_class: str = "K1",
) -> LaneTransaction:
    """A vehicle leaving a barrier at a scenario time."""
    return LaneTransaction(
        event_id=f"d{next(_ids)}",
        ts=at(seconds),
        plaza_id=PLAZA,
        lane_id=lane,
        direction="entry",
        payment=payment,
        result="OK",
        vehicle_class=vehicle_class,
        axles=2,
        pass_id=f"p{next(_ids)}",
        plate_hash=plate or f"anon{next(_ids)}",
        service_ms=None if service_s is None else round(service_s * 1000),
    )


def lane_status(seconds: float, lane: str, state: LaneState) -> LaneStatus:
    """A lane changing state at a scenario time."""
    return LaneStatus(
        event_id=f"s{next(_ids)}",
        ts=at(seconds),
        plaza_id=PLAZA,
        lane_id=lane,
        direction="entry",
        state=state,
    )


def by_time(events: Iterable[QueueEvent]) -> list[QueueEvent]:
    """Events in event-time order (a stable sort keeps same-ts events as written)."""
    return sorted(events, key=lambda e: e.ts)


def replay(
    config: ApproachConfig, events: Iterable[QueueEvent], until_s: float
) -> tuple[list[QueueEstimate], list[Alert]]:
    """Feed a timeline to a fresh estimator and collect everything up to `until_s`."""
    estimator = ApproachEstimator(config)
    for event in by_time(events):
        estimator.observe(event)
    out = estimator.advance(at(until_s))
    return out.estimates, out.alerts


def seconds_of(estimate: QueueEstimate) -> float:
    """The scenario time of an output."""
    return (estimate.ts - T0) / 1000
