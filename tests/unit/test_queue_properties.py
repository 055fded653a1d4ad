"""Properties of the queue estimator over arbitrary event timelines (hypothesis)."""

from __future__ import annotations

import itertools
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.queue import ApproachEstimator, Emitted
from tests.unit.queue_timeline import (
    Lanes,
    QueueEvent,
    approach,
    arrival,
    at,
    by_time,
    departure,
    lane_status,
)
from tollmon.events import ApproachDetection, LaneStatus, LaneTransaction

LANES: Lanes = (("01", "ETC"), ("02", "MTC"), ("03", "MIXED"))
LANE_IDS = [lane for lane, _ in LANES]
EVENT_KINDS = (ApproachDetection, LaneTransaction, LaneStatus)

arrivals = st.builds(
    arrival,
    st.integers(0, 1200),
    st.integers(1, 4),
    st.one_of(st.none(), st.sampled_from([f"v{k}" for k in range(8)])),
)
departures = st.builds(
    departure,
    st.integers(0, 1200),
    st.sampled_from(LANE_IDS),
    st.one_of(st.none(), st.floats(0.5, 40.0)),
    st.one_of(st.none(), st.sampled_from([f"v{k}" for k in range(8)])),
    st.sampled_from(["ETC", "MTC"]),
    st.sampled_from(["K1", "H3", "Z2"]),
)
statuses = st.builds(
    lane_status,
    st.integers(0, 1200),
    st.sampled_from(LANE_IDS),
    st.sampled_from(["OPEN", "CLOSED", "FAULT"]),
)
timelines = st.lists(st.one_of(arrivals, departures, statuses), max_size=120).map(by_time)
configs = st.sampled_from(
    [
        approach(lanes=LANES),
        approach(lanes=LANES, distance_m=40.0, free_flow_s=None),
        approach(lanes=LANES, distance_m=None, free_flow_s=None),
    ]
)


def run(config_events: tuple[object, list[QueueEvent]], cuts: set[int]) -> Emitted:
    """Feed the timeline, calling `advance` at the event times listed in `cuts`."""
    config, events = config_events
    estimator = ApproachEstimator(config)  # type: ignore[arg-type]  # drawn from `configs`
    collected = Emitted([], [])
    for k, event in enumerate(events):
        estimator.observe(event)
        if k in cuts:
            out = estimator.advance(event.ts)
            collected.estimates.extend(out.estimates)
            collected.alerts.extend(out.alerts)
    out = estimator.advance(at(1500.0))
    collected.estimates.extend(out.estimates)
    collected.alerts.extend(out.alerts)
    return collected


@settings(max_examples=150, deadline=None)
@given(st.tuples(configs, timelines))
def test_queue_and_wait_are_never_negative(config_events: tuple[object, list[QueueEvent]]) -> None:
    estimates = run(config_events, set()).estimates

    assert all(e.queue_veh >= 0.0 and e.queue_m >= 0.0 and e.wait_s >= 0.0 for e in estimates)
    assert all(0 <= e.level <= 3 for e in estimates)
    assert all(b.ts - a.ts == 5000 for a, b in itertools.pairwise(estimates))


@settings(max_examples=150, deadline=None)
@given(st.tuples(configs, timelines), st.sets(st.integers(0, 120)))
def test_outputs_do_not_depend_on_how_the_events_are_batched(
    config_events: tuple[object, list[QueueEvent]], cuts: set[int]
) -> None:
    assert run(config_events, cuts) == run(config_events, set())


@settings(max_examples=100, deadline=None)
@given(st.tuples(configs, timelines), st.randoms(use_true_random=False))
def test_outputs_do_not_depend_on_how_the_topics_interleave_at_equal_times(
    config_events: tuple[object, list[QueueEvent]], rnd: Random
) -> None:
    # Each kind comes from its own topic, in order; only the merge across topics may vary.
    config, events = config_events
    by_kind = [[e for e in events if isinstance(e, kind)] for kind in EVENT_KINDS]
    merged: list[QueueEvent] = []
    while any(by_kind):
        source = rnd.choice([queue for queue in by_kind if queue])
        merged.append(source.pop(0))

    assert run((config, by_time(merged)), set()) == run(config_events, set())
