"""A worker SIGKILLed mid-stream loses nothing: restarted, or replaced by a survivor, its
estimates and alerts equal those of a worker that was never interrupted.

Each scenario runs a clean worker and the faulted worker(s) side by side on their own
topic prefixes, fed the same paced stream (a surge at one plaza, a failing ETC antenna
at another, on different partitions), and compares what they published.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaProducer

from tests.faults.conftest import unconsumed
from tests.integration import conftest as integration
from tests.integration.conftest import (
    Stack,
    WorkerProcess,
    launch_worker,
    read_topic,
    wait_for_stable_group,
    wait_until,
)
from tollmon.events import Event, encode
from tollmon.network import load_network
from tollmon.publish import topic_for
from tollmon.simulate import Surge, TrafficProfile, generate

pytestmark = [pytest.mark.integration, pytest.mark.faults]

stack = integration.stack  # the session fixture of the integration suite: the same stack

# On different partitions of four (keys hash with Kafka's default partitioner).
SURGE_PLAZA, ETC_PLAZA = "URC-E01", "URC-E03"
DURATION_S = 900  # event time: the surge congests, the antenna degrades, both resolve
PRODUCE_S = 30.0  # wall time over which the stream is produced
CLEAN_PORT, FAULTED_PORTS = 6068, (6069, 6070)
# Short sessions: a restarted worker waits out its dead predecessor's session.
WORKER_ENV = {"TOLLMON_SESSION_TIMEOUT_S": "6", "TOLLMON_CHECKPOINT_EVERY_S": "5"}

AlertKey = tuple[str, str]  # (alert_id, status)
EstimateKey = tuple[str, str, int]  # (plaza, direction, ts)


@dataclass
class Published:
    """What one prefix's workers published, duplicates folded."""

    alerts: set[AlertKey] = field(default_factory=set)
    estimates: dict[EstimateKey, set[bytes]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def read(cls, stack: Stack, prefix: str) -> Published:
        out = cls()
        for _, value in read_topic(stack.bootstrap, prefix + "toll.alerts"):
            alert = msgspec.json.decode(value)
            out.alerts.add((alert["alert_id"], alert["status"]))
        for _, value in read_topic(stack.bootstrap, prefix + "toll.queue.estimates"):
            estimate = msgspec.json.decode(value)
            key = (estimate["plaza_id"], estimate["direction"], estimate["ts"])
            out.estimates[key].add(value)
        return out

    def lost_against(self, clean: Published) -> int:
        missing = clean.alerts - self.alerts
        return len(missing) + sum(1 for key in clean.estimates if key not in self.estimates)

    def diverged_from(self, clean: Published) -> int:
        """Alert ids only one side raised, and estimates that differ in any field."""
        alerts = len(clean.alerts ^ self.alerts)
        return alerts + sum(
            1 for key, values in self.estimates.items() if values != clean.estimates.get(key)
        )


class PacedProducer:
    """Produces the same events to several prefixes, spread evenly over `seconds`."""

    def __init__(self, stack: Stack, prefixes: list[str], events: list[Event], seconds: float):
        self._stack = stack
        self._prefixes = prefixes
        self._events = events
        self._seconds = seconds
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=self._seconds + 30)

    def reached(self, share: float) -> Callable[[], bool]:
        return lambda: self.sent >= share * len(self._events)

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self._stack.bootstrap, linger_ms=5)
        started = time.monotonic()
        step = self._seconds / len(self._events)
        for i, event in enumerate(self._events):
            delay = started + i * step - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for prefix in self._prefixes:
                producer.send(
                    topic_for(event, prefix), key=event.plaza_id.encode(), value=encode(event)
                )
            self.sent = i + 1
        producer.flush()
        producer.close()


@pytest.fixture(scope="module")
def events() -> list[Event]:
    network = load_network(Path("config/network.yaml"))
    # Event time ends a minute ago: live-mode validation takes it as recent traffic.
    start_ms = int(time.time() * 1000) - (DURATION_S + 60) * 1000
    profile = TrafficProfile(
        vehicles_per_hour=600,
        surges=(Surge(SURGE_PLAZA, 8.0, start_s=60, end_s=420, direction="entry"),),
        etc_failure_by_lane={(ETC_PLAZA, "entry", "01"): 0.30},
        rate_by_plaza={ETC_PLAZA: 1000},
    )
    return list(
        generate(network, start_ms, DURATION_S, profile, seed=3, plazas=[SURGE_PLAZA, ETC_PLAZA])
    )


@pytest.fixture
def workers(stack: Stack, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(prefix: str, port: int) -> WorkerProcess:
        worker = launch_worker(stack, tmp_path, prefix, port, **WORKER_ENV)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(signal.SIGKILL)


def processing(worker: WorkerProcess) -> Callable[[], bool]:
    return lambda: worker.total("tollmon_events_total") > 0


def new_prefix(name: str) -> str:
    return f"f{name}{uuid.uuid4().hex[:6]}."


def all_consumed(stack: Stack, prefix: str) -> bool:
    """Every input message of the prefix is behind the group's committed offsets."""
    return not unconsumed(stack, prefix)


def settle(stack: Stack, faulted: str, clean: str) -> tuple[Published, Published]:
    """Wait until both sides consumed everything and published the same; return both."""
    state: dict[str, Published] = {}

    def same() -> bool:
        if not (all_consumed(stack, clean) and all_consumed(stack, faulted)):
            return False
        state["clean"] = Published.read(stack, clean)
        state["faulted"] = Published.read(stack, faulted)
        lost = state["faulted"].lost_against(state["clean"])
        return not lost and not state["faulted"].diverged_from(state["clean"])

    started = time.monotonic()
    # On time-out the assertions that follow say what differs.
    with contextlib.suppress(AssertionError):
        wait_until(same, 60, "the faulted run to publish what the clean run did")
    print(f"settled in {time.monotonic() - started:.1f} s")
    if "clean" not in state:
        state["clean"] = Published.read(stack, clean)
        state["faulted"] = Published.read(stack, faulted)
    return state["clean"], state["faulted"]


def assert_same(clean: Published, faulted: Published) -> None:
    kinds = {alert_id.split(":")[0] for alert_id, _ in clean.alerts}
    assert clean.alerts, "the scenario raised no alert: nothing would be compared"
    assert faulted.alerts == clean.alerts
    assert set(faulted.estimates) == set(clean.estimates)
    differing = [k for k, v in faulted.estimates.items() if v != clean.estimates[k]]
    assert not differing, f"estimates differ at {differing[:5]} (alert kinds {kinds})"


def test_a_worker_killed_three_times_publishes_what_a_clean_run_does(
    stack: Stack,
    workers: Callable[..., WorkerProcess],
    events: list[Event],
    record_property: Callable[[str, object], None],
) -> None:
    clean_prefix, faulted_prefix = new_prefix("clean"), new_prefix("killed")
    workers(clean_prefix, CLEAN_PORT)
    worker = workers(faulted_prefix, FAULTED_PORTS[0])
    wait_for_stable_group(stack, clean_prefix, 1)
    wait_for_stable_group(stack, faulted_prefix, 1)

    producer = PacedProducer(stack, [clean_prefix, faulted_prefix], events, PRODUCE_S)
    producer.start()
    recoveries: list[float] = []
    for kill_at in (0.25, 0.5, 0.75):
        wait_until(producer.reached(kill_at), PRODUCE_S + 30, f"{kill_at:.0%} produced")
        wait_until(processing(worker), 60, "the worker processing events")
        worker.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        worker = workers(faulted_prefix, FAULTED_PORTS[0])
        wait_until(processing(worker), 60, "the restarted worker processing", worker.log_tail)
        recoveries.append(time.monotonic() - killed_at)
    producer.join()

    clean, faulted = settle(stack, faulted_prefix, clean_prefix)
    lost, diverged = faulted.lost_against(clean), len(clean.alerts ^ faulted.alerts)
    print(
        f"FAULT sigkill: injected={len(recoveries)} lost={lost} alert_ids_diverged={diverged} "
        f"recovery_s={max(recoveries):.1f} (each: {', '.join(f'{r:.1f}' for r in recoveries)})"
    )
    record_property("fault", "worker SIGKILLed mid-stream and restarted")
    record_property("injected", len(recoveries))
    record_property("lost", lost)
    record_property("alert_ids_diverged", diverged)
    record_property("recovery_s", round(max(recoveries), 1))
    assert not read_topic(stack.bootstrap, faulted_prefix + "toll.deadletter")
    behind = unconsumed(stack, faulted_prefix)
    assert not behind, f"input offsets never committed: {behind}\n{worker.log_tail()}"
    assert_same(clean, faulted)


def test_a_survivor_takes_over_a_killed_workers_partitions_and_state(
    stack: Stack,
    workers: Callable[..., WorkerProcess],
    events: list[Event],
    record_property: Callable[[str, object], None],
) -> None:
    clean_prefix, pair_prefix = new_prefix("clean"), new_prefix("pair")
    workers(clean_prefix, CLEAN_PORT)
    pair = [workers(pair_prefix, port) for port in FAULTED_PORTS]
    wait_for_stable_group(stack, clean_prefix, 1)
    wait_for_stable_group(stack, pair_prefix, 2)

    producer = PacedProducer(stack, [clean_prefix, pair_prefix], events, PRODUCE_S)
    producer.start()
    wait_until(producer.reached(0.4), PRODUCE_S + 30, "40% produced")

    def plazas_of(worker: WorkerProcess) -> set[str]:
        return {
            dict(labels)["plaza"]
            for (name, labels), _ in worker.metrics().items()
            if name == "tollmon_queue_vehicles"
        }

    wait_until(lambda: any(plazas_of(w) for w in pair), 30, "estimates from the pair")
    victim, survivor = sorted(pair, key=lambda w: -len(plazas_of(w)))
    moved = plazas_of(victim) - plazas_of(survivor)
    victim.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(
        lambda: moved <= plazas_of(survivor),
        60,
        f"the survivor estimating {sorted(moved)}",
        state=survivor.log_tail,
    )
    takeover_s = time.monotonic() - killed_at
    producer.join()

    clean, faulted = settle(stack, pair_prefix, clean_prefix)
    lost, diverged = faulted.lost_against(clean), len(clean.alerts ^ faulted.alerts)
    print(
        f"FAULT takeover: injected=1 moved={sorted(moved)} lost={lost} "
        f"alert_ids_diverged={diverged} takeover_s={takeover_s:.1f}"
    )
    record_property("fault", "one of two workers SIGKILLed, the other takes over")
    record_property("injected", 1)
    record_property("moved_plazas", len(moved))
    record_property("lost", lost)
    record_property("alert_ids_diverged", diverged)
    record_property("recovery_s", round(takeover_s, 1))
    # `settle` waited for every input offset of both groups to be committed.
    assert moved, "the killed worker held no plaza: nothing was taken over"
    assert_same(clean, faulted)
