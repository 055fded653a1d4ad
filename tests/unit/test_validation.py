"""Decoding and validation: every rejection has a precise, bounded reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tollmon.errors import InvalidEventError
from tollmon.events import ApproachDetection, LaneTransaction, WeighMeasurement
from tollmon.validation import REASONS, EventValidator, ReferenceData, decode

NOW_MS = 1_764_300_000_000
HOUR_MS = 3_600_000

REFERENCE = ReferenceData.build(
    plazas=["P1", "P2"],
    lanes=[("P1", "entry", "01"), ("P1", "entry", "02"), ("P2", "exit", "01")],
    detectors=[("P1-EN-D1", "P1", "entry")],
    scales=[("P1-EN-S1", "P1", "entry"), ("P2-EX-S1", "P2", "exit")],
)


def transaction(**changes: Any) -> dict[str, Any]:
    event = {
        "type": "lane_transaction",
        "event_id": "tx-1",
        "ts": NOW_MS,
        "plaza_id": "P1",
        "lane_id": "01",
        "direction": "entry",
        "payment": "ETC",
        "result": "OK",
        "vehicle_class": "K1",
        "axles": 2,
        "pass_id": "pass-1",
        "plate_hash": "ab12",
    }
    event.update(changes)
    return event


def weighing(**changes: Any) -> dict[str, Any]:
    event = {
        "type": "weigh_measurement",
        "event_id": "wm-1",
        "ts": NOW_MS,
        "plaza_id": "P1",
        "scale_id": "P1-EN-S1",
        "station": "entry",
        "lane_id": "02",
        "pass_id": "pass-1",
        "plate_hash": "ab12",
        "axles": 3,
        "gross_kg": 21_000,
    }
    event.update(changes)
    return event


def detection(**changes: Any) -> dict[str, Any]:
    event = {
        "type": "approach_detection",
        "event_id": "d-1",
        "ts": NOW_MS,
        "plaza_id": "P1",
        "direction": "entry",
        "detector_id": "P1-EN-D1",
    }
    event.update(changes)
    return event


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def without(event: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != key}


validator = EventValidator(REFERENCE, horizon_ms=72 * HOUR_MS)


def test_a_valid_transaction_decodes_to_its_struct() -> None:
    event = validator.validate(raw(transaction(service_ms=2800)), NOW_MS)
    assert isinstance(event, LaneTransaction)
    assert event.service_ms == 2800
    assert event.lane_id == "01"


def test_optional_fields_take_their_contract_defaults() -> None:
    event = validator.validate(raw(detection()), NOW_MS)
    assert isinstance(event, ApproachDetection)
    assert (event.count, event.lane_id, event.plate_hash) == (1, None, None)
    weighed = validator.validate(raw(weighing()), NOW_MS)
    assert isinstance(weighed, WeighMeasurement)
    assert weighed.quality == "OK"


def test_extra_fields_are_ignored_not_rejected() -> None:
    event = validator.validate(raw(transaction(operator_note="ok")), NOW_MS)
    assert isinstance(event, LaneTransaction)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b"\x00\xff garbage", "not_json", id="garbage-bytes"),
        pytest.param(b"", "not_json", id="empty"),
        pytest.param(b"[1, 2]", "not_object", id="json-array"),
        pytest.param(b'"text"', "not_object", id="json-string"),
        pytest.param(raw(without(transaction(), "type")), "unknown_type", id="no-type"),
        pytest.param(raw(transaction(type="toll_booth")), "unknown_type", id="bad-type"),
        pytest.param(raw(transaction(type=7)), "unknown_type", id="type-not-string"),
        pytest.param(raw(without(transaction(), "pass_id")), "missing_field", id="no-pass-id"),
        pytest.param(raw(without(weighing(), "gross_kg")), "missing_field", id="no-gross"),
        pytest.param(raw(transaction(ts="yesterday")), "wrong_type", id="ts-string"),
        pytest.param(raw(transaction(ts=1.5e12)), "wrong_type", id="ts-float"),
        pytest.param(raw(transaction(axles="2")), "wrong_type", id="axles-string"),
        pytest.param(raw(transaction(payment="CASH")), "invalid_value", id="payment-enum"),
        pytest.param(raw(transaction(direction="north")), "invalid_value", id="direction"),
        pytest.param(raw(transaction(vehicle_class="K9")), "invalid_value", id="class"),
        pytest.param(raw(transaction(plaza_id="bad id!")), "invalid_value", id="plaza-pattern"),
        pytest.param(raw(transaction(event_id="x" * 65)), "invalid_value", id="id-too-long"),
        pytest.param(raw(transaction(axles=11)), "out_of_range", id="axles-11"),
        pytest.param(raw(weighing(gross_kg=250_000)), "out_of_range", id="gross-high"),
        pytest.param(raw(weighing(gross_kg=100)), "out_of_range", id="gross-low"),
        pytest.param(raw(detection(count=0)), "out_of_range", id="count-zero"),
        pytest.param(raw(transaction(ts=-1)), "out_of_range", id="negative-ts"),
        pytest.param(raw(transaction(plaza_id="P9")), "unknown_plaza", id="plaza"),
        pytest.param(raw(transaction(lane_id="77")), "unknown_lane", id="lane"),
        pytest.param(raw(transaction(direction="exit")), "unknown_lane", id="direction-lane"),
        pytest.param(raw(detection(detector_id="D?")), "unknown_detector", id="detector"),
        pytest.param(raw(detection(direction="exit")), "unknown_detector", id="detector-dir"),
        pytest.param(raw(weighing(scale_id="S?")), "unknown_scale", id="scale"),
        pytest.param(raw(weighing(station="exit")), "unknown_scale", id="scale-station"),
        pytest.param(raw(weighing(axle_kg=[7000, 7000])), "invalid_value", id="axle-kg-len"),
        pytest.param(raw(transaction(ts=NOW_MS + 6 * 60_000)), "future_ts", id="future"),
        pytest.param(raw(transaction(ts=NOW_MS - 73 * HOUR_MS)), "too_old", id="too-old"),
    ],
)
def test_invalid_messages_are_rejected_with_a_precise_reason(payload: bytes, reason: str) -> None:
    assert reason in REASONS
    with pytest.raises(InvalidEventError) as caught:
        validator.validate(payload, NOW_MS)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_a_rejection_names_the_offending_field() -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode(raw(weighing(gross_kg=250_000)))
    assert "gross_kg" in caught.value.detail


def test_ts_within_five_minutes_ahead_is_accepted_for_clock_skew() -> None:
    event = validator.validate(raw(transaction(ts=NOW_MS + 4 * 60_000)), NOW_MS)
    assert event.ts == NOW_MS + 4 * 60_000


def test_without_a_time_reference_only_the_time_checks_are_skipped() -> None:
    assert validator.validate(raw(transaction(ts=1_000)), None).ts == 1_000
    with pytest.raises(InvalidEventError, match="unknown_plaza"):
        validator.validate(raw(transaction(ts=1_000, plaza_id="P9")), None)
