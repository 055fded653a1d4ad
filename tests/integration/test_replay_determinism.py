"""A backtest equals the stream: the same recorded events, replayed through the real broker
into a replay-mode worker, give the same queue estimates and the same alerts, and a live
worker running beside the replay sees nothing of it."""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaConsumer, TopicPartition

from detectors.alerts import Alert
from detectors.queue import QueueEstimate
from tests.integration.conftest import (
    REPO,
    WORKER_PORTS,
    Stack,
    WorkerProcess,
    read_topic,
    wait_until,
)
from tollmon.backtest import BacktestResult, run_backtest
from tollmon.eventfiles import read_event_files
from tollmon.network import load_network
from tollmon.publish import write_jsonl
from tollmon.replay import load_messages, replay_messages
from tollmon.settings import INPUT_TOPICS
from tollmon.simulate import Surge, TrafficProfile, generate
from tollmon.trips import TripProfile, generate_trips

pytestmark = pytest.mark.integration

START_MS = 1_714_521_600_000
DURATION_S = 1200
PLAZAS = ["URC-E01", "URC-E02"]

Approach = tuple[str, str]


def record_day(path: Path) -> None:
    network = load_network(REPO / "config" / "network.yaml")
    traffic = generate(
        network,
        START_MS,
        DURATION_S,
        TrafficProfile(vehicles_per_hour=500, surges=(Surge("URC-E01", 10.0, 120, 480, "entry"),)),
        seed=11,
        plazas=PLAZAS,
    )
    trips = generate_trips(
        network,
        START_MS,
        DURATION_S,
        TripProfile(
            trips_per_hour=1500,
            scale_bias={"URC-E02-EN-S1": 0.04},
            travel_min_s=300,
            travel_max_s=600,
        ),
        seed=12,
    )
    end_ms = START_MS + DURATION_S * 1000
    merged = heapq.merge(traffic, trips, key=lambda e: e.ts)
    write_jsonl((e for e in merged if e.ts < end_ms), path)


def per_approach(estimates: list[QueueEstimate]) -> dict[Approach, list[QueueEstimate]]:
    out: dict[Approach, list[QueueEstimate]] = defaultdict(list)
    for e in estimates:
        out[(e.plaza_id, e.direction)].append(e)
    return dict(out)


def first_difference(
    approach: Approach, expected: list[QueueEstimate], got: list[QueueEstimate]
) -> str | None:
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            return f"{approach} estimate {i}: backtest {want} != stream {have}"
    if len(expected) != len(got):
        return f"{approach}: backtest has {len(expected)} estimates, stream {len(got)}"
    return None


def alert_states(alerts: list[Alert]) -> set[tuple[str, str]]:
    return {(a.alert_id, a.status) for a in alerts}


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recording") / "day.jsonl"
    record_day(path)
    return path


@pytest.fixture(scope="module")
def backtest(recording: Path) -> BacktestResult:
    return run_backtest(
        load_network(REPO / "config" / "network.yaml"), read_event_files([recording])
    )


# A fast replay lets the worker read one input topic far ahead of another; this holds
# because the reorder buffer bounds its hold in processing time, not event time.
def test_replayed_stream_gives_the_backtest_estimates_and_alerts(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    recording: Path,
    backtest: BacktestResult,
) -> None:
    # A live worker runs beside the replay on the unprefixed live topics.
    live = start_worker(prefix="", port=WORKER_PORTS[1])
    live_before = live_state(stack, live)
    # No Alertmanager: replayed alerts must not page anyone sharing the stack.
    worker = start_worker(TOLLMON_TIME_MODE="replay", TOLLMON_ALERTMANAGER_URL="")
    replay_messages(load_messages(read_event_files([recording])), stack.bootstrap, worker.prefix)

    def stream_estimates() -> list[QueueEstimate]:
        topic = worker.prefix + "toll.queue.estimates"
        return [
            msgspec.json.decode(v, type=QueueEstimate)
            for _, v in read_topic(stack.bootstrap, topic)
        ]

    def stream_alerts() -> list[Alert]:
        topic = worker.prefix + "toll.alerts"
        return [msgspec.json.decode(v, type=Alert) for _, v in read_topic(stack.bootstrap, topic)]

    # The worker releases the last buffered events once its feeds have been idle a while.
    wait_until(
        lambda: len(stream_estimates()) >= len(backtest.estimates),
        180,
        f"{len(backtest.estimates)} estimates from the worker",
    )
    streamed = per_approach(stream_estimates())
    expected = per_approach(backtest.estimates)
    assert streamed.keys() == expected.keys()
    differences = [
        difference
        for approach, series in expected.items()
        if (difference := first_difference(approach, series, streamed[approach])) is not None
    ]
    assert not differences, "\n".join(differences)
    assert backtest.alerts, "the recording should raise alerts to compare"
    wait_until(
        lambda: alert_states(backtest.alerts) <= alert_states(stream_alerts()),
        60,
        "the backtest's alerts from the worker",
    )
    assert alert_states(stream_alerts()) == alert_states(backtest.alerts)
    # The replay touched nothing live: topics, counters and alerts as they were.
    assert live_state(stack, live) == live_before


LIVE_TOPICS = (*INPUT_TOPICS, "toll.alerts", "toll.queue.estimates", "toll.deadletter")


def live_state(stack: Stack, live: WorkerProcess) -> dict[str, object]:
    """End offsets of the live topics and the live worker's event and alert counters."""
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in LIVE_TOPICS
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = {
            f"{tp.topic}/{tp.partition}": n for tp, n in consumer.end_offsets(partitions).items()
        }
    finally:
        consumer.close()
    return {
        "offsets": ends,
        "events": live.total("tollmon_events_total"),
        "alerts": live.total("tollmon_alerts_total"),
    }
