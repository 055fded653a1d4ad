"""Weighing through the real broker: trips paired across plazas and workers, alerts
for discrepancies, admitted overloads and a biased scale, and open trips that survive
a killed worker."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from detectors.alerts import Alert
from streams.bias_checkpoints import BIAS_CHECKPOINTS
from tests.integration.conftest import (
    WORKER_PORTS,
    Stack,
    WorkerProcess,
    network_with_unpaired_horizon,
    prometheus_value,
    read_topic,
    wait_for_stable_group,
    wait_until,
)
from tollmon.events import Event, WeighMeasurement, encode
from tollmon.network import load_network
from tollmon.publish import topic_for
from tollmon.trips import TripProfile, generate_trips

pytestmark = pytest.mark.integration

BIASED_SCALE = "URC-E01-EN-S1"


def send(stack: Stack, prefix: str, events: list[Event]) -> None:
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=20)
    for event in events:
        producer.send(topic_for(event, prefix), key=event.plaza_id.encode(), value=encode(event))
    producer.flush()
    producer.close()


def trips(duration_s: float, profile: TripProfile, seed: int) -> list[Event]:
    network = load_network("config/network.yaml")
    start_ms = int(time.time() * 1000) - int(duration_s + 3 * 3600) * 1000
    return list(generate_trips(network, start_ms, duration_s, profile, seed))


def paired(workers: list[WorkerProcess]) -> float:
    return sum(
        w.total("tollmon_weight_pairs_total", outcome=outcome)
        for w in workers
        for outcome in ("matched", "discrepant")
    )


def alerts(stack: Stack, prefix: str) -> list[Alert]:
    topic = prefix + "toll.alerts"
    return [msgspec.json.decode(v, type=Alert) for _, v in read_topic(stack.bootstrap, topic)]


def test_two_workers_pair_every_trip_and_raise_the_weighing_alerts(
    stack: Stack, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = start_worker(port=WORKER_PORTS[0])
    second = start_worker(prefix=first.prefix, port=WORKER_PORTS[1])
    wait_for_stable_group(stack, first.prefix, members=2)
    profile = TripProfile(
        trips_per_hour=2400,
        scale_bias={BIASED_SCALE: 0.03},
        overload_admitted_share=0.01,
        axle_change_share=0.005,
    )
    events = trips(2 * 3600, profile, seed=21)
    n_trips = len({e.pass_id for e in events if isinstance(e, WeighMeasurement)})
    send(stack, first.prefix, events)

    def progress() -> dict[str, float]:
        workers = (first, second)
        return {
            "events": sum(w.total("tollmon_events_total") for w in workers),
            "paired": paired([first, second]),
            "unmatched": sum(
                w.total("tollmon_weight_pairs_total", outcome="unmatched") for w in workers
            ),
            "sent": len(events),
        }

    wait_until(lambda: paired([first, second]) == n_trips, 180, f"{n_trips} trips paired", progress)
    # Both workers took part: the trips were spread over their partitions.
    assert first.total("tollmon_weighings_total") > 0
    assert second.total("tollmon_weighings_total") > 0

    def firing() -> Counter[str]:
        return Counter(a.kind for a in alerts(stack, first.prefix) if a.status == "firing")

    # Weighings are re-keyed for pairing as they come, while the admissions they join pass
    # their plaza's reorder buffer (held up to TOLLMON_REORDER_IDLE_S, since these plazas'
    # detections are silent): OVERLOAD_ADMITTED may come after the last pair.
    wait_until(lambda: firing()["OVERLOAD_ADMITTED"] >= 1, 60, "OVERLOAD_ADMITTED", firing)
    raised = alerts(stack, first.prefix)
    kinds = Counter(a.kind for a in raised if a.status == "firing")
    axle_changes = sum(
        1
        for a in raised
        if a.kind == "WEIGHT_DISCREPANCY" and a.evidence["entry_axles"] != a.evidence["exit_axles"]
    )
    assert axle_changes >= 1
    assert kinds["OVERLOAD_ADMITTED"] >= 1
    bias = [a for a in raised if a.kind == "SCALE_BIAS" and a.status == "firing"]
    assert {a.subject for a in bias} == {BIASED_SCALE}

    query = f'max(tollmon_scale_bias_ratio{{scale="{BIASED_SCALE}"}})'
    wait_until(
        lambda: (prometheus_value(stack, query) or 0.0) > 0.02,
        60,
        "the biased scale's bias in Prometheus",
    )


def test_a_partition_drained_before_the_others_does_not_expire_their_trips(
    stack: Stack, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """A backlog read one input partition after another (a consumer may well fetch it
    so): the trips whose other end waits in a partition not read yet stay open."""
    network_file = network_with_unpaired_horizon(tmp_path, 900)
    worker = start_worker(TOLLMON_NETWORK_FILE=str(network_file))
    profile = TripProfile(trips_per_hour=1200, travel_min_s=60, travel_max_s=600)
    events = trips(2 * 3600, profile, seed=13)

    def partition(event: Event) -> int:
        """As the producer's default partitioner, over the test topics' 4 partitions."""
        return (murmur2(event.plaza_id.encode()) & 0x7FFFFFFF) % 4

    weighings = Counter(partition(e) for e in events if isinstance(e, WeighMeasurement))
    first = weighings.most_common(1)[0][0]
    ahead = [e for e in events if partition(e) == first]
    n_trips = len({e.pass_id for e in events if isinstance(e, WeighMeasurement)})
    send(stack, worker.prefix, ahead)
    wait_until(
        lambda: worker.total("tollmon_weighings_total") >= weighings[first],
        90,
        f"the {weighings[first]} weighings of partition {first} consumed",
    )
    send(stack, worker.prefix, [e for e in events if partition(e) != first])

    def outcomes() -> dict[str, float]:
        return {
            "paired": paired([worker]),
            "unmatched": worker.total("tollmon_weight_pairs_total", outcome="unmatched"),
        }

    wait_until(lambda: paired([worker]) == n_trips, 120, f"{n_trips} trips paired", outcomes)
    assert outcomes()["unmatched"] == 0
    # The burst of open trips went to their changelog without Faust stopping the agent.
    assert "producer buffer full" not in worker.log_path.read_text(errors="replace")


def test_open_trips_survive_a_killed_worker(
    stack: Stack, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    events = trips(1800, TripProfile(trips_per_hour=1200, travel_min_s=4000), seed=5)
    entries = [e for e in events if e.ts < events[0].ts + 1800 * 1000 + 60_000]
    exits = events[len(entries) :]
    n_trips = len({e.pass_id for e in entries if isinstance(e, WeighMeasurement)})
    assert all(e.ts > entries[-1].ts for e in exits)
    send(stack, worker.prefix, entries)
    wait_until(
        lambda: worker.total("tollmon_events_total") >= len(entries),
        90,
        "all entries consumed",
    )
    time.sleep(6)  # let the changelog and the offsets be committed
    worker.stop(signal.SIGKILL)

    restarted = start_worker(prefix=worker.prefix)
    send(stack, worker.prefix, exits)
    wait_until(lambda: paired([restarted]) == n_trips, 120, f"{n_trips} trips paired")
    unmatched = restarted.total("tollmon_weight_pairs_total", outcome="unmatched")
    assert unmatched == 0


def test_trips_restored_on_another_worker_still_expire(
    stack: Stack, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Trucks that never reach an exit scale count as unmatched once the horizon passes,
    also after their open trips moved to a worker that restored them from the changelog."""
    horizon_s = 600
    network = {"TOLLMON_NETWORK_FILE": str(network_with_unpaired_horizon(tmp_path, horizon_s))}
    worker = start_worker(**network)
    events = trips(1500, TripProfile(trips_per_hour=2400, travel_min_s=4000), seed=8)
    first_ms = events[0].ts
    early = [e for e in events if e.ts < first_ms + 300_000]
    # Entries only (the first exits come 4,000 s after their entries), late enough to
    # carry every source's event time past the early trips' horizon.
    late = [
        e for e in events if first_ms + (300 + horizon_s + 60) * 1000 <= e.ts < first_ms + 1_500_000
    ]
    n_early = len({e.pass_id for e in early if isinstance(e, WeighMeasurement)})
    assert n_early > 20
    assert not any(isinstance(e, WeighMeasurement) and e.station == "exit" for e in late)
    send(stack, worker.prefix, early)
    wait_until(
        lambda: worker.total("tollmon_events_total") >= len(early), 90, "early entries consumed"
    )
    time.sleep(6)  # let the changelog and the offsets be committed
    worker.stop(signal.SIGKILL)

    # Another data directory: the open trips come back from the changelog alone.
    restarted = start_worker(prefix=worker.prefix, port=WORKER_PORTS[1], **network)
    send(stack, worker.prefix, late)

    def unmatched() -> float:
        return restarted.total("tollmon_weight_pairs_total", outcome="unmatched")

    # At least once, not exactly: the new owner reads back the input its predecessor
    # took in after its last checkpoint and re-keys those weighings again, and one that
    # reaches the pairing after its trip expired opens and expires that trip once more.
    wait_until(lambda: unmatched() >= n_early, 120, f"{n_early} early trips expired", unmatched)


def test_the_scale_bias_window_survives_a_killed_worker(
    stack: Stack, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A restart does not begin the network's bias fit again from nothing: the worker
    that takes over the pairs restores the window, and its firing alert, and goes on."""
    worker = start_worker()
    network = load_network("config/network.yaml")
    profile = TripProfile(trips_per_hour=2400, scale_bias={BIASED_SCALE: 0.05})
    events = trips(2 * 3600, profile, seed=22)
    n_trips = len({e.pass_id for e in events if isinstance(e, WeighMeasurement)})
    send(stack, worker.prefix, events)
    wait_until(lambda: paired([worker]) == n_trips, 180, f"{n_trips} trips paired")
    checkpoints = (worker.prefix + "tollmon").replace(".", "-") + "-" + BIAS_CHECKPOINTS
    wait_until(lambda: read_topic(stack.bootstrap, checkpoints), 60, "a scale-bias checkpoint")
    before = [a for a in alerts(stack, worker.prefix) if a.kind == "SCALE_BIAS"]
    assert {a.subject for a in before if a.status == "firing"} == {BIASED_SCALE}
    time.sleep(6)  # let the pairs' offsets be committed
    worker.stop(signal.SIGKILL)

    # Another data directory, and a quarter of an hour of unbiased trips: far too few
    # pairs through the biased scale to name it again from a window begun afresh.
    restarted = start_worker(prefix=worker.prefix, port=WORKER_PORTS[1])
    later = generate_trips(network, events[-1].ts + 60_000, 900, TripProfile(1200), seed=23)
    send(stack, worker.prefix, list(later))

    def bias() -> float:
        return restarted.total("tollmon_scale_bias_ratio", scale=BIASED_SCALE)

    wait_until(lambda: bias() > 0.03, 120, "the biased scale's bias after the restart", bias)
    assert "scale-bias window restored" in restarted.log_path.read_text(errors="replace")
    after = [a for a in alerts(stack, worker.prefix) if a.kind == "SCALE_BIAS"]
    # Still the one alert: not raised again under a new id, not resolved.
    assert {a.alert_id for a in after} == {a.alert_id for a in before}
    assert all(a.status == "firing" for a in after)
