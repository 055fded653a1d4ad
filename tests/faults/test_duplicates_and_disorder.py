"""Duplicates and disorder: re-delivered events are dead-lettered as duplicates, and
feeds that arrive seconds apart are merged back into event-time order, so estimates
and alert ids equal the clean stream's."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.faults.conftest import NO_ALERTMANAGER, Outcome, dead_letter_reasons, send, settle
from tests.integration.conftest import Stack, WorkerProcess
from tollmon.events import Event
from tollmon.publish import topic_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DUPLICATE_SHARE = 0.05
SKEW_MS = 5_000  # well within the allowed lateness (30 s)


def with_duplicates(events: list[Event], rng: random.Random) -> tuple[list[Event], int]:
    """5 % of events delivered again, up to five messages after the original (a producer's
    retry): a re-delivery never comes before the message it repeats."""
    out = list(events)
    duplicates = 0
    for i in reversed(range(len(events))):
        if rng.random() < DUPLICATE_SHARE:
            out.insert(i + 1 + rng.randint(0, 5), events[i])
            duplicates += 1
    return out, duplicates


def feeds_skewed(events: list[Event], rng: random.Random) -> list[Event]:
    """Each topic delayed by its own 0-5 s: feeds interleave out of order, each in order."""
    delay = {topic: rng.uniform(0, SKEW_MS) for topic in {topic_for(e) for e in events}}
    return sorted(events, key=lambda e: e.ts + delay[topic_for(e)])


def shuffled_within_feeds(events: list[Event], rng: random.Random) -> list[Event]:
    """Every event moved by up to 5 s, so one topic's events arrive out of order."""
    return sorted(events, key=lambda e: e.ts + rng.uniform(0, SKEW_MS))


def estimates_differing(a: Outcome, b: Outcome) -> int:
    return sum(
        x != y
        for key in a.estimates.keys() | b.estimates.keys()
        for x, y in zip(a.estimates.get(key, []), b.estimates.get(key, []), strict=False)
    )


def run_disturbed(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    valid_stream: list[Event],
    clean: Outcome,
    reorder: Callable[[list[Event], random.Random], list[Event]],
    record_property: Callable[[str, object], None],
    fault: str,
    **env: str,
) -> Outcome:
    rng = random.Random(9)
    events, duplicates = with_duplicates(reorder(valid_stream, rng), rng)
    worker = start_worker(**NO_ALERTMANAGER, **env)
    send(stack, worker.prefix, events)
    outcome = settle(stack, worker, valid=len(valid_stream), invalid=duplicates)

    record_property("fault", fault)
    record_property("injected", f"{duplicates} duplicates, {len(valid_stream)} reordered")
    record_property("lost", len(valid_stream) - outcome.valid_events)
    record_property("alert_ids_diverged", len(outcome.alert_ids ^ clean.alert_ids))
    record_property("estimates_differing", estimates_differing(outcome, clean))
    assert dead_letter_reasons(stack, worker.prefix) == ["duplicate"] * duplicates
    assert outcome.valid_events == len(valid_stream)
    return outcome


def test_duplicates_and_skewed_feeds_change_neither_estimates_nor_alerts(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    valid_stream: list[Event],
    clean_outcome: Outcome,
    record_property: Callable[[str, object], None],
) -> None:
    outcome = run_disturbed(
        stack, start_worker, valid_stream, clean_outcome, feeds_skewed, record_property,
        "duplicates (5 %) and feeds skewed by up to 5 s",
    )  # fmt: skip
    assert outcome.estimates == clean_outcome.estimates
    assert outcome.alert_ids == clean_outcome.alert_ids


def test_events_shuffled_within_a_feed_inside_the_allowed_lateness_change_no_estimate(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    valid_stream: list[Event],
    clean_outcome: Outcome,
    record_property: Callable[[str, object], None],
) -> None:
    """A worker told that its feeds may be 5 s out of order holds each feed back by 5 s."""
    outcome = run_disturbed(
        stack, start_worker, valid_stream, clean_outcome, shuffled_within_feeds,
        record_property, "duplicates (5 %) and events shuffled by up to 5 s within a feed",
        TOLLMON_FEED_DISORDER_S=str(SKEW_MS / 1000),
    )  # fmt: skip
    assert outcome.alert_ids == clean_outcome.alert_ids
    assert outcome.estimates == clean_outcome.estimates
