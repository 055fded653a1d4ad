"""The metrics recorder: a batch of events counts exactly what the events count one by one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tollmon.events import ApproachDetection, Event
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.pipeline import Pipeline
from tollmon.recorder import MetricsRecorder
from tollmon.simulate import Surge, TrafficProfile, generate

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


def test_the_metrics_page_is_what_prometheus_client_writes_for_the_registry(
    network: Network,
) -> None:
    metrics = Metrics.create()
    recorder = MetricsRecorder(metrics)
    pipeline = Pipeline(network)
    profile = TrafficProfile(vehicles_per_hour=2400, etc_failure_rate=0.05)
    for event in generate(network, START_MS, 600, profile, seed=2):
        recorder.event(event)
        out = pipeline.process(event, START_MS / 1000)
        for estimate in out.estimates:
            recorder.estimate(estimate)
        for lane, ratio in out.etc_ratios:
            recorder.etc_ratio(lane, ratio)
    metrics.plaza_info.labels("URC-E01", 'Urumqi "East"', "G30", "43.8", "87.6").set(1)
    metrics.event_lag_seconds.observe(0.2)
    metrics.events_invalid.labels("not_json").inc()
    recorder.consumer_lag("toll.lane.transactions", 0, 12)

    page = metrics.exposition().decode().splitlines()
    # The same lines, in another order (prometheus-client's `_created` samples aside).
    expected = [
        line
        for line in generate_latest(metrics.registry).decode().splitlines()
        if "_created" not in line
    ]
    assert sorted(line for line in page if "_created" not in line) == sorted(expected)
    assert len(page) > 500


def test_approaches_with_a_detector_show_their_count_corrections_from_the_first_estimate(
    network: Network,
) -> None:
    metrics = Metrics.create()
    recorder = MetricsRecorder(metrics)
    pipeline = Pipeline(network)
    profile = TrafficProfile(vehicles_per_hour=900)
    for event in generate(network, START_MS, 120, profile, seed=4, plazas=["URC-W05"]):
        for estimate in pipeline.process(event, START_MS / 1000).estimates:
            recorder.estimate(estimate)
    recorder.correction(("URC-W05", "exit", "phantom"), 2.0)
    recorder.correction(("URC-W05", "exit", "phantom"), 1.0)

    corrections = {
        (labels["direction"], labels["kind"]): value
        for (name, pairs), value in samples(metrics.registry).items()
        if name == "tollmon_queue_corrections_total"
        for labels in [dict(pairs)]
    }
    # URC-W05's entry has no detector (headway method): nothing to correct there.
    assert corrections == {("exit", "missed"): 0.0, ("exit", "phantom"): 3.0}


def test_an_approach_shows_whether_its_queue_stands_past_its_detector(network: Network) -> None:
    metrics = Metrics.create()
    recorder = MetricsRecorder(metrics)
    pipeline = Pipeline(network)
    # A 4× surge at URC-E01 spills back past its entry detector (180 m) after some minutes.
    profile = TrafficProfile(
        vehicles_per_hour=1200, surges=(Surge("URC-E01", factor=4.0, start_s=0, end_s=1500),)
    )
    seen: list[tuple[float, bool]] = []
    for event in generate(network, START_MS, 1500, profile, seed=5, plazas=["URC-E01"]):
        for estimate in pipeline.process(event, START_MS / 1000).estimates:
            recorder.estimate(estimate)
            if estimate.direction == "entry":
                gauge = samples(metrics.registry)[
                    ("tollmon_spillback", (("direction", "entry"), ("plaza", "URC-E01")))
                ]
                seen.append((gauge, estimate.spillback))

    assert all(gauge == (1.0 if spillback else 0.0) for gauge, spillback in seen)
    assert {spillback for _, spillback in seen} == {False, True}
