"""Property: no input, however malformed, makes the decoder raise anything unexpected."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tollmon.errors import InvalidEventError
from tollmon.validation import REASONS, EventValidator, ReferenceData

validator = EventValidator(
    ReferenceData.build(plazas=["P1"], lanes=[("P1", "entry", "01")]), horizon_ms=3_600_000
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)

FIELDS = [
    "type",
    "event_id",
    "ts",
    "plaza_id",
    "lane_id",
    "direction",
    "payment",
    "result",
    "vehicle_class",
    "axles",
    "pass_id",
    "plate_hash",
    "gross_kg",
    "scale_id",
    "station",
    "detector_id",
    "count",
    "state",
    "axle_kg",
    "quality",
]
TYPES = ["lane_transaction", "approach_detection", "weigh_measurement", "lane_status"]

event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional=dict.fromkeys(FIELDS[1:], json_values),
)


def outcome(payload: bytes) -> str:
    try:
        validator.validate(payload, 1_764_300_000_000)
    except InvalidEventError as exc:
        reason = exc.reason
    else:
        return "valid"
    assert reason in REASONS
    return reason


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_but_a_rejection(payload: bytes) -> None:
    outcome(payload)


@settings(max_examples=500)
@given(json_values)
def test_arbitrary_json_never_raises_anything_but_a_rejection(value: object) -> None:
    outcome(json.dumps(value).encode())


@settings(max_examples=500)
@given(event_like)
def test_event_shaped_json_with_arbitrary_field_values_is_handled(value: dict[str, object]) -> None:
    outcome(json.dumps(value).encode())
