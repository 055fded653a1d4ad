"""A flood of malformed messages (hypothesis-drawn and random bytes) mixed into valid
traffic: every one is dead-lettered with a reason, and the valid traffic gives exactly
what it gives alone."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.faults.conftest import NO_ALERTMANAGER, PLAZA, Outcome, dead_letter_reasons, send, settle
from tests.integration.conftest import Stack, WorkerProcess
from tollmon.events import Event, encode
from tollmon.settings import INPUT_TOPICS
from tollmon.validation import REASONS

pytestmark = [pytest.mark.integration, pytest.mark.faults]

GARBAGE_PER_VALID = 0.5


def hypothesis_payloads(count: int) -> list[bytes]:
    """Messages hypothesis draws: bytes, any JSON value, or an event-like object whose
    `ts` has the wrong type (so none of them can be a valid event)."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )
    event_like = st.fixed_dictionaries(
        {"type": st.sampled_from(["lane_transaction", "approach_detection"]),
         "plaza_id": st.sampled_from([PLAZA, "NOWHERE"]),
         "event_id": st.text(max_size=80),
         "ts": st.text() | st.floats() | st.none()},
        optional={"lane_id": json_values, "direction": json_values},
    )  # fmt: skip
    drawn: list[bytes] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.binary(min_size=1, max_size=200) | (json_values | event_like).map(json.dumps))
    def draw(payload: bytes | str) -> None:
        drawn.append(payload if isinstance(payload, bytes) else payload.encode())

    draw()
    return drawn


def malformed(rng: random.Random, valid: Event, n: int) -> bytes:
    """Random bytes, or a real event with a required field cut out."""
    if rng.random() < 0.5:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
    fields = json.loads(encode(valid))
    fields["event_id"] = f"garbage-{n}"
    del fields[rng.choice(["plaza_id", "ts", "type"])]
    return json.dumps(fields).encode()


def with_garbage(events: list[Event], seed: int) -> tuple[list[Event | tuple[str, bytes]], int]:
    """Valid events with about one malformed message per two, half of them hypothesis's."""
    rng = random.Random(seed)
    drawn = iter(hypothesis_payloads(int(len(events) * GARBAGE_PER_VALID / 2)))
    mixed: list[Event | tuple[str, bytes]] = []
    injected = 0
    for event in events:
        mixed.append(event)
        while rng.random() < GARBAGE_PER_VALID / (1 + GARBAGE_PER_VALID):
            payload = next(drawn, None) if rng.random() < 0.5 else None
            raw = payload if payload is not None else malformed(rng, event, injected)
            mixed.append((rng.choice(INPUT_TOPICS), raw))
            injected += 1
    return mixed, injected


def test_malformed_messages_are_dead_lettered_and_change_nothing_else(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    valid_stream: list[Event],
    clean_outcome: Outcome,
    record_property: Callable[[str, object], None],
) -> None:
    mixed, injected = with_garbage(valid_stream, seed=8)
    worker = start_worker(**NO_ALERTMANAGER)
    send(stack, worker.prefix, mixed)
    outcome = settle(stack, worker, valid=len(valid_stream), invalid=injected)

    reasons = dead_letter_reasons(stack, worker.prefix)
    record_property("fault", "malformed messages mixed into valid traffic")
    record_property("injected", injected)
    record_property("lost", len(valid_stream) - outcome.valid_events)
    record_property("alert_ids_diverged", len(outcome.alert_ids ^ clean_outcome.alert_ids))
    record_property("reasons", ",".join(sorted(set(reasons))))
    assert len(reasons) == injected
    assert set(reasons) <= set(REASONS) - {"duplicate"}  # each says why it was refused
    assert outcome.valid_events == clean_outcome.valid_events == len(valid_stream)
    assert outcome.estimates == clean_outcome.estimates
    assert outcome.alert_ids == clean_outcome.alert_ids
    assert any(a.kind == "QUEUE_CONGESTION" for a in outcome.alerts)
    assert worker.total("tollmon_events_invalid_total") == injected  # /metrics still answers
