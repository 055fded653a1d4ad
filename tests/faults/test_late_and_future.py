"""Events outside the time the worker accepts: older than the horizon → `too_old`,
more than 5 minutes ahead of the clock → `future_ts` (both dead-lettered); later than
the allowed lateness but inside the horizon → counted as late and still used. The
valid traffic's alerts are unchanged."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec
import pytest

from tests.faults.conftest import (
    NO_ALERTMANAGER,
    PLAZA,
    Outcome,
    dead_letter_reasons,
    send,
    settle,
)
from tests.integration.conftest import Stack, WorkerProcess
from tollmon.events import ApproachDetection, Event

pytestmark = [pytest.mark.integration, pytest.mark.faults]

HOUR_MS = 3_600_000
HORIZON_MS = 72 * HOUR_MS  # the worker's default event horizon
LATE_MS = 120_000  # four times the default allowed lateness (30 s)
FUTURE_MS = 20 * 60_000  # beyond the 5-minute tolerance for clocks running ahead


def shifted(event: Event, name: str, by_ms: int) -> Event:
    return msgspec.structs.replace(event, event_id=f"{name}-{event.event_id}", ts=event.ts + by_ms)


def test_too_old_and_future_events_are_dead_lettered_and_late_ones_counted(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    valid_stream: list[Event],
    clean_outcome: Outcome,
    record_property: Callable[[str, object], None],
) -> None:
    rng = random.Random(4)
    mixed: list[Event] = []
    too_old = future = late = 0
    for event in valid_stream:
        mixed.append(event)
        roll = rng.random()
        if isinstance(event, ApproachDetection) and event.direction == "exit" and roll < 0.1:
            # A detection two minutes behind its feed: on the exit side, away from the
            # entry surge, so it adds to the exit counts without raising an alert.
            mixed.append(shifted(event, "late", -LATE_MS))
            late += 1
        elif roll < 0.02:
            mixed.append(shifted(event, "old", -(HORIZON_MS + HOUR_MS)))
            too_old += 1
        elif roll < 0.04:
            mixed.append(shifted(event, "future", FUTURE_MS))
            future += 1
    worker = start_worker(**NO_ALERTMANAGER)
    send(stack, worker.prefix, mixed)
    outcome = settle(stack, worker, valid=len(valid_stream) + late, invalid=too_old + future)

    reasons = dead_letter_reasons(stack, worker.prefix)
    record_property("fault", "events too old, from the future, and late")
    record_property("injected", f"{too_old} too old, {future} future, {late} late")
    record_property("lost", len(valid_stream) + late - outcome.valid_events)
    record_property("alert_ids_diverged", len(outcome.alert_ids ^ clean_outcome.alert_ids))
    assert late > 0
    assert sorted(reasons) == sorted(["too_old"] * too_old + ["future_ts"] * future)
    assert worker.total("tollmon_events_late_total", type="approach_detection") == late
    assert outcome.alert_ids == clean_outcome.alert_ids
    entry = f"{PLAZA}/entry".encode()
    assert outcome.estimates[entry] == clean_outcome.estimates[entry]
