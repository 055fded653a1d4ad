"""Input event models of SPEC.md §2, as msgspec structs tagged by `type`."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Direction = Literal["entry", "exit"]
Payment = Literal["ETC", "MTC"]
TxResult = Literal["OK", "ETC_FAIL", "REJECTED"]
LaneState = Literal["OPEN", "CLOSED", "FAULT"]
WeighQuality = Literal["OK", "UNSTABLE", "OFF_CENTER", "SPEED_OUT_OF_RANGE"]

EventId = Annotated[str, Meta(min_length=1, max_length=64)]
PlazaId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
EpochMs = Annotated[int, Meta(ge=0)]
Ident = Annotated[str, Meta(min_length=1, max_length=64)]
Axles = Annotated[int, Meta(ge=2, le=10)]
GrossKg = Annotated[int, Meta(ge=500, le=200_000)]
# JT/T 489 classes: K1-K4 passenger, H1-H6 truck, Z1-Z6 special.
VehicleClass = Annotated[str, Meta(pattern=r"^(K[1-4]|H[1-6]|Z[1-6])$")]


class _Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    event_id: EventId
    ts: EpochMs
    plaza_id: PlazaId


class LaneTransaction(_Event, frozen=True, kw_only=True, tag="lane_transaction"):
    """One vehicle leaving a lane's barrier."""

    lane_id: Ident
    direction: Direction
    payment: Payment
    result: TxResult
    vehicle_class: VehicleClass
    axles: Axles
    pass_id: Ident
    plate_hash: Ident
    service_ms: Annotated[int, Meta(ge=0, le=3_600_000)] | None = None


class ApproachDetection(_Event, frozen=True, kw_only=True, tag="approach_detection"):
    """One vehicle (or a small batch, `count`) crossing an approach detector."""

    direction: Direction
    detector_id: Ident
    lane_id: Ident | None = None
    plate_hash: Ident | None = None
    count: Annotated[int, Meta(ge=1, le=1000)] = 1


class WeighMeasurement(_Event, frozen=True, kw_only=True, tag="weigh_measurement"):
    """One vehicle weighed at an entry or exit scale."""

    scale_id: Ident
    station: Direction
    lane_id: Ident
    pass_id: Ident
    plate_hash: Ident
    axles: Axles
    gross_kg: GrossKg
    axle_kg: list[Annotated[int, Meta(ge=0, le=200_000)]] | None = None
    speed_kmh: Annotated[float, Meta(ge=0, le=300)] | None = None
    quality: WeighQuality = "OK"


class LaneStatus(_Event, frozen=True, kw_only=True, tag="lane_status"):
    """A lane opened, closed or faulted."""

    lane_id: Ident
    direction: Direction
    state: LaneState
    reason: Annotated[str, Meta(max_length=500)] | None = None


Event = LaneTransaction | ApproachDetection | WeighMeasurement | LaneStatus

EVENT_TYPES: tuple[str, ...] = (
    "lane_transaction",
    "approach_detection",
    "weigh_measurement",
    "lane_status",
)


def event_type(event: Event) -> str:
    """The contract name of an event's type (its `type` tag)."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]  # tags are all str


_encoder = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    """Serialise an event to its contract JSON form (with the `type` tag)."""
    return _encoder.encode(event)
