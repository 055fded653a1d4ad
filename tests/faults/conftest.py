"""Fault-suite fixtures: the integration stack and workers, plus the faults to inject.

One valid stream (a surge at one plaza, so QUEUE_CONGESTION fires) is generated once
per session; each case sends it, disturbed by its fault, to a fresh worker and compares
what comes out with a worker fed the clean stream.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from detectors.alerts import Alert
from tests.integration.conftest import (
    REPO,
    Stack,
    WorkerProcess,
    launch_worker,
    read_topic,
    stack,
    start_worker,
    wait_until,
)
from tollmon.events import Event, encode
from tollmon.network import load_network
from tollmon.publish import topic_for
from tollmon.settings import INPUT_TOPICS
from tollmon.simulate import Surge, TrafficProfile, generate

__all__ = ["stack", "start_worker"]

PLAZA = "URC-E01"
DURATION_S = 720
SURGE = Surge(PLAZA, 8.0, start_s=60, end_s=540, direction="entry")
NO_ALERTMANAGER = {"TOLLMON_ALERTMANAGER_URL": ""}  # keep the shared Alertmanager clean


@dataclass(frozen=True)
class Outcome:
    """What a worker made of its input once it had settled."""

    estimates: dict[bytes, list[bytes]]  # per approach key, in topic order
    alerts: list[Alert]
    valid_events: int
    dead_letters: int

    @property
    def alert_ids(self) -> set[str]:
        return {a.alert_id for a in self.alerts}

    def estimate_count(self) -> int:
        return sum(len(v) for v in self.estimates.values())

    def estimates_differing_from(self, other: Outcome) -> list[str]:
        """Estimates (by approach and time) on one side only, re-sent duplicates folded.

        Delivery is at-least-once: a producer retrying across a broker crash may publish
        an estimate twice, which is fine; a different or missing estimate is not.
        """
        mine, theirs = _by_time(self.estimates), _by_time(other.estimates)
        return [
            f"{key[0].decode()} at {key[1]}: {sorted(mine.get(key, ()))} != "
            f"{sorted(theirs.get(key, ()))}"
            for key in sorted(mine.keys() | theirs.keys())
            if mine.get(key) != theirs.get(key)
        ]


def _by_time(estimates: dict[bytes, list[bytes]]) -> dict[tuple[bytes, int], set[bytes]]:
    out: dict[tuple[bytes, int], set[bytes]] = {}
    for key, values in estimates.items():
        for value in values:
            out.setdefault((key, msgspec.json.decode(value)["ts"]), set()).add(value)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def surge_stream(start_ms: int, seed: int = 5) -> list[Event]:
    """Twelve minutes at one plaza with an eightfold entry surge: events in time order."""
    network = load_network(REPO / "config" / "network.yaml")
    profile = TrafficProfile(vehicles_per_hour=600, surges=(SURGE,))
    return list(generate(network, start_ms, DURATION_S, profile, seed=seed, plazas=[PLAZA]))


@pytest.fixture(scope="session")
def valid_stream() -> list[Event]:
    return surge_stream(int(time.time() * 1000) - (DURATION_S + 60) * 1000)


def send(stack: Stack, prefix: str, messages: Iterable[Event | tuple[str, bytes]]) -> None:
    """Produce in the given order: events to their topics, raw (topic, bytes) as they are."""
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=20)
    for message in messages:
        if isinstance(message, tuple):
            topic, raw = message
            producer.send(prefix + topic, key=PLAZA.encode(), value=raw)
        else:
            producer.send(
                topic_for(message, prefix), key=message.plaza_id.encode(), value=encode(message)
            )
    producer.flush()
    producer.close()


def unconsumed(stack: Stack, prefix: str) -> list[str]:
    """Input partitions of the prefix with messages past the group's committed offset."""
    group = f"{prefix}tollmon".replace(".", "-")
    # A consumer that never subscribes only reads the group's offsets; it does not join.
    consumer = KafkaConsumer(
        bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(prefix + t, p) for t in INPUT_TOPICS for p in range(4)]
        behind = []
        for tp, end in consumer.end_offsets(tps).items():
            committed = consumer.committed(tp) or 0
            if end and committed < end:
                behind.append(f"{tp.topic}[{tp.partition}] committed {committed} of {end}")
        return behind
    finally:
        consumer.close()


def dead_letter_reasons(stack: Stack, prefix: str) -> list[str]:
    """The `tollmon.reason` header of every message on the dead-letter topic."""
    consumer = KafkaConsumer(
        prefix + "toll.deadletter",
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
    )
    try:
        return [
            dict(m.headers).get("tollmon.reason", b"").decode(errors="replace") for m in consumer
        ]
    finally:
        consumer.close()


def settle(
    stack: Stack, worker: WorkerProcess, valid: int, invalid: int | None, timeout: float = 45
) -> Outcome:
    """Wait until the worker has counted all input and its outputs stop growing.

    `invalid` None: the number of dead letters is not known in advance (not waited for).
    """

    def counted() -> tuple[float, float]:
        return worker.total("tollmon_events_total"), worker.total("tollmon_events_invalid_total")

    def all_counted() -> bool:
        valid_seen, invalid_seen = counted()
        return valid_seen == valid and (invalid is None or invalid_seen == invalid)

    wait_until(all_counted, timeout, "all input counted", counted)
    # The last events wait in the reorder buffer until their feed is idle (10 s).
    previous: list[int] = []
    ready = time.monotonic() + 12

    def estimates_stable() -> bool:
        count = len(read_topic(stack.bootstrap, worker.prefix + "toll.queue.estimates"))
        previous.append(count)
        return len(previous) >= 2 and previous[-1] == previous[-2] and time.monotonic() > ready

    wait_until(estimates_stable, timeout, "the estimates to stop growing", lambda: previous[-3:])

    estimates: dict[bytes, list[bytes]] = {}
    for key, value in read_topic(stack.bootstrap, worker.prefix + "toll.queue.estimates"):
        estimates.setdefault(key or b"", []).append(value)
    alerts = [
        msgspec.json.decode(v, type=Alert)
        for _, v in read_topic(stack.bootstrap, worker.prefix + "toll.alerts")
    ]
    valid_events, dead = counted()
    return Outcome(estimates, alerts, int(valid_events), int(dead))


@pytest.fixture(scope="session")
def clean_outcome(
    stack: Stack, valid_stream: list[Event], tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    """A worker fed only the valid stream: the reference every fault is compared with."""
    worker = launch_worker(stack, tmp_path_factory.mktemp("clean"), TOLLMON_ALERTMANAGER_URL="")
    try:
        send(stack, worker.prefix, valid_stream)
        return settle(stack, worker, valid=len(valid_stream), invalid=0)
    finally:
        worker.stop()


# The fault table (docs/operations.md): every test in tests/faults that records these
# properties with `record_property` gets a row, whoever wrote it.
TABLE_COLUMNS = ("fault", "injected", "lost", "alert_ids_diverged", "recovery_s")


def fault_rows(reports: Iterable[pytest.TestReport]) -> list[dict[str, object]]:
    """One row per fault case that ran to its end and recorded what it injected."""
    rows = []
    for report in reports:
        properties = dict(report.user_properties)
        if report.when == "call" and "fault" in properties:
            outcome = "xfail" if hasattr(report, "wasxfail") else report.outcome
            rows.append(
                {
                    **{column: properties.get(column, "") for column in TABLE_COLUMNS},
                    "outcome": outcome,
                }
            )
    return rows


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [
        report
        for key in ("passed", "failed", "xfailed", "xpassed")
        for report in terminalreporter.stats.get(key, [])
    ]
    rows = fault_rows(reports)
    if not rows:
        return
    header = (*TABLE_COLUMNS, "outcome")
    terminalreporter.section("fault table")
    terminalreporter.write_line("| " + " | ".join(header) + " |")
    terminalreporter.write_line("|" + "---|" * len(header))
    for row in rows:
        terminalreporter.write_line("| " + " | ".join(str(row[c]) for c in header) + " |")
