"""Turn raw message bytes into a contract event, or say precisely why not.

Every rejection is an `InvalidEventError` whose `reason` is one of `REASONS` (a
bounded set, safe as a metric label) and whose `detail` names the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tollmon.errors import InvalidEventError
from tollmon.events import ApproachDetection, Event, LaneStatus, LaneTransaction, WeighMeasurement
from tollmon.network import Network

REASONS: tuple[str, ...] = (
    "not_json",
    "not_object",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "out_of_range",
    "unknown_plaza",
    "unknown_lane",
    "unknown_detector",
    "unknown_scale",
    "future_ts",
    "too_old",
    "duplicate",
)

FUTURE_TOLERANCE_MS = 5 * 60 * 1000

_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)

# msgspec's validation messages are stable and precise; map them to reason codes.
_MESSAGE_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Object missing required field `type`"), "unknown_type"),
    (re.compile(r" - at `\$\.type`$"), "unknown_type"),
    (re.compile(r"^Expected `object`, got `\w+`$"), "not_object"),
    (re.compile(r"^Object missing required field"), "missing_field"),
    (re.compile(r"^Expected `[\w |]+`, got `\w+`"), "wrong_type"),
    (re.compile(r"^Expected `\w+` [<>]=? "), "out_of_range"),
)


def _reason_for(message: str) -> str:
    for pattern, reason in _MESSAGE_REASONS:
        if pattern.search(message):
            return reason
    return "invalid_value"


def decode(raw: bytes) -> Event:
    """Decode and type-check one message; raise `InvalidEventError` on any problem."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise InvalidEventError(_reason_for(message), message) from None
    except msgspec.DecodeError as exc:
        raise InvalidEventError("not_json", str(exc)) from None


@dataclass(frozen=True)
class ReferenceData:
    """What the network configuration says exists, for checking events against it."""

    plazas: frozenset[str]
    lanes: frozenset[tuple[str, str, str]] = frozenset()  # (plaza, direction, lane)
    detectors: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (plaza, dir)
    scales: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (plaza, station)

    @classmethod
    def build(
        cls,
        plazas: Iterable[str],
        lanes: Iterable[tuple[str, str, str]] = (),
        detectors: Iterable[tuple[str, str, str]] = (),
        scales: Iterable[tuple[str, str, str]] = (),
    ) -> ReferenceData:
        """Build from (id, plaza, direction) triples for detectors and scales."""
        return cls(
            plazas=frozenset(plazas),
            lanes=frozenset(lanes),
            detectors={d: (p, s) for d, p, s in detectors},
            scales={sc: (p, s) for sc, p, s in scales},
        )


class EventValidator:
    """Checks decoded events against the network and the event-time horizon."""

    def __init__(
        self,
        reference: ReferenceData,
        horizon_ms: int,
        future_tolerance_ms: int = FUTURE_TOLERANCE_MS,
    ) -> None:
        self._ref = reference
        self._horizon_ms = horizon_ms
        self._future_ms = future_tolerance_ms
        # Keyed by the event's own type, so each check gets the type it is annotated with.
        self._by_type: dict[type, Callable[[Any], None]] = {
            LaneTransaction: self._check_lane_event,
            LaneStatus: self._check_lane_event,
            ApproachDetection: self._check_detection,
            WeighMeasurement: self._check_weighing,
        }

    def validate(self, raw: bytes, now_ms: int | None) -> Event:
        """Decode `raw` and check it is possible at `now_ms`; raise `InvalidEventError` if not.

        `now_ms` is None when no time reference exists yet (a replay's first event).
        """
        event = decode(raw)
        self.check(event, now_ms)
        return event

    def check(self, event: Event, now_ms: int | None) -> None:
        """Raise `InvalidEventError` if a well-typed event is impossible for this network."""
        if event.plaza_id not in self._ref.plazas:
            raise InvalidEventError(
                "unknown_plaza", f"plaza_id {event.plaza_id!r} is not configured"
            )
        if now_ms is not None:
            self._check_time(event.ts, now_ms)
        # Once per event: one dict lookup by type instead of a chain of isinstance tests.
        self._by_type[type(event)](event)

    def _check_lane_event(self, event: LaneTransaction | LaneStatus) -> None:
        self._check_lane(event.plaza_id, event.direction, event.lane_id)

    def _check_detection(self, event: ApproachDetection) -> None:
        where = self._ref.detectors.get(event.detector_id)
        if where != (event.plaza_id, event.direction):
            raise InvalidEventError(
                "unknown_detector",
                f"detector {event.detector_id!r} is not configured at "
                f"{event.plaza_id}/{event.direction}",
            )

    def _check_time(self, ts: int, now_ms: int) -> None:
        if ts > now_ms + self._future_ms:
            raise InvalidEventError("future_ts", f"ts is {(ts - now_ms) / 1000:.0f} s ahead of now")
        if ts < now_ms - self._horizon_ms:
            age_h = (now_ms - ts) / 3_600_000
            raise InvalidEventError("too_old", f"ts is {age_h:.1f} h old, beyond the horizon")

    def _check_lane(self, plaza: str, direction: str, lane: str) -> None:
        if (plaza, direction, lane) not in self._ref.lanes:
            raise InvalidEventError(
                "unknown_lane", f"lane {lane!r} is not configured at {plaza}/{direction}"
            )

    def _check_weighing(self, event: WeighMeasurement) -> None:
        where = self._ref.scales.get(event.scale_id)
        if where != (event.plaza_id, event.station):
            raise InvalidEventError(
                "unknown_scale",
                f"scale {event.scale_id!r} is not configured at {event.plaza_id}/{event.station}",
            )
        if event.axle_kg is not None and len(event.axle_kg) != event.axles:
            raise InvalidEventError(
                "invalid_value",
                f"axle_kg has {len(event.axle_kg)} values for {event.axles} axles",
            )


def reference_from_network(network: Network) -> ReferenceData:
    """What the validator needs to know of a loaded network configuration."""
    lanes = [
        (plaza.id, direction, lane.id)
        for plaza in network.plazas
        for direction, approach in plaza.approaches()
        for lane in approach.lanes
    ]
    return ReferenceData.build(
        plazas=network.plaza_ids,
        lanes=lanes,
        detectors=[(d.detector_id, d.plaza_id, d.direction) for d in network.detector_sites],
        scales=[(s.scale_id, s.plaza_id, s.direction) for s in network.scale_sites],
    )


def validator_for(network: Network, horizon_ms: int, time_mode: str) -> EventValidator:
    """The validator a worker or backtest uses in this time mode.

    In a replay "now" is the input's own watermark, which only moves with the input: a
    quiet night ahead of it is not the future. There, only what lies more than the event
    horizon ahead of the watermark (a broken clock, a wrong year) is impossible.
    """
    future_ms = horizon_ms if time_mode == "replay" else FUTURE_TOLERANCE_MS
    return EventValidator(reference_from_network(network), horizon_ms, future_ms)
