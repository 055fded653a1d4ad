"""The metrics recorder: a batch of events counts exactly what the events count one by one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from tollmon.events import ApproachDetection, Event
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.recorder import MetricsRecorder
from tollmon.simulate import TrafficProfile, generate

START_MS = 1_714_521_600_000


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_batch_of_events_counts_what_the_events_count_one_by_one(network: Network) -> None:
    events: list[Event] = list(
        generate(network, START_MS, 300, TrafficProfile(vehicles_per_hour=900), seed=5)
    )
    # A detector reporting a small batch of vehicles counts them all.
    events.append(
        ApproachDetection(
            event_id="batch-1",
            ts=START_MS,
            plaza_id="URC-E01",
            direction="entry",
            detector_id="URC-E01-EN-D1",
            count=3,
        )
    )
    one_by_one, batched = Metrics.create(), Metrics.create()
    single = MetricsRecorder(one_by_one)
    for event in events:
        single.event(event)
    MetricsRecorder(batched).events(events)

    expected = samples(one_by_one.registry)
    assert samples(batched.registry) == expected
    kinds = {name for (name, _), value in expected.items() if value > 0}
    assert {
        "tollmon_lane_transactions_total",
        "tollmon_arrivals_total",
        "tollmon_weighings_total",
    } <= kinds
