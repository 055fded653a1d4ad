"""Produce recorded events into a topic prefix, keyed by plaza, with their original times.

Messages are sent byte for byte as recorded (invalid ones too, so a replay exercises
the dead-letter path like the original day did), in event-time order, either paced
at N × the recorded rate or as fast as the broker takes them. Routing needs only
`type`, `ts` and `plaza_id`, which are read without validating the rest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Producer

from tollmon.errors import TollmonError
from tollmon.eventfiles import InputFormat, RawLine, read_event_files, read_record_files
from tollmon.kafka_security import KafkaSecurity
from tollmon.lanerecords import LaneRecordAdapter, PlateHasher, redact
from tollmon.network import Network
from tollmon.publish import TOPIC_BY_TYPE

# librdkafka batches in C: large batches and a short linger make the broker, not
# Python, the limit (kafka-python tops out near 10,000 messages/s here).
PRODUCER_OPTIONS: dict[str, Any] = {
    "linger.ms": 20,
    "batch.size": 1 << 20,
    "queue.buffering.max.messages": 1_000_000,
    "acks": 1,
}
PROGRESS_EVERY = 2_000
FLUSH_TIMEOUT_S = 60.0  # messages between progress-bar refreshes: updates cost time


class ReplayError(TollmonError):
    """The broker did not accept the replayed messages."""


class _Routing(msgspec.Struct):
    type: str
    plaza_id: str
    ts: int


_routing = msgspec.json.Decoder(_Routing)


@dataclass(frozen=True, slots=True)
class Message:
    """One message to replay: where it goes, its key, its event time and its bytes."""

    topic: str  # without the prefix
    key: bytes
    ts: int
    value: bytes


@dataclass(frozen=True)
class ReplayStats:
    sent: int
    skipped: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class LoadedMessages:
    """Messages in event-time order, and how many lines could not be routed."""

    messages: list[Message]
    skipped: int


def read_input(
    files: Iterable[Path],
    fmt: InputFormat,
    network: Network | None = None,
    hasher: PlateHasher | None = None,
) -> Iterator[RawLine]:
    """The raw messages of event files, or of lane-record exports turned into events."""
    if fmt == "events":
        return read_event_files(files)
    if network is None or hasher is None:
        raise ValueError("lane records need the network and the plate hasher")
    adapter = LaneRecordAdapter(network, hasher)
    return read_record_files(files, adapter.messages, lambda row: msgspec.json.encode(redact(row)))


def route(raw: bytes) -> tuple[str, str, int] | None:
    """(type, plaza_id, ts) of a message, or None when it cannot be routed to a topic."""
    try:
        r = _routing.decode(raw)
    except msgspec.ValidationError:
        # Routable but otherwise wrong (e.g. a text ts): send it, the worker will say why.
        return _route_leniently(raw)
    except msgspec.DecodeError:
        return None
    return (r.type, r.plaza_id, r.ts) if r.type in TOPIC_BY_TYPE else None


def _route_leniently(raw: bytes) -> tuple[str, str, int] | None:
    value = msgspec.json.decode(raw)
    if not isinstance(value, dict):
        return None
    kind, plaza_id, ts = value.get("type"), value.get("plaza_id"), value.get("ts")
    if kind not in TOPIC_BY_TYPE or not isinstance(plaza_id, str):
        return None
    return str(kind), plaza_id, ts if isinstance(ts, int) else 0


def load_messages(lines: Iterable[RawLine]) -> LoadedMessages:
    """Route every line and sort by event time (stable, so equal times keep file order)."""
    messages: list[Message] = []
    skipped = 0
    for line in lines:
        routed = None if line.error is not None else route(line.raw)
        if routed is None:
            skipped += 1
            continue
        kind, plaza_id, ts = routed
        messages.append(Message(TOPIC_BY_TYPE[kind], plaza_id.encode(), ts, line.raw))
    messages.sort(key=lambda m: m.ts)
    return LoadedMessages(messages, skipped)


def pacing_delay(first_ts: int, ts: int, wall_start: float, now: float, speed: float) -> float:
    """Seconds to wait before sending an event stamped `ts`, at `speed` × recorded time."""
    return wall_start + (ts - first_ts) / 1000 / speed - now


def replay_messages(
    loaded: LoadedMessages,
    bootstrap: str,
    prefix: str = "",
    speed: float | None = None,
    *,
    progress: bool = False,
    security: KafkaSecurity | None = None,
) -> ReplayStats:
    """Send every message; `speed` None means as fast as possible."""
    messages = loaded.messages
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "on_delivery": delivered,
            **PRODUCER_OPTIONS,
            **(security.librdkafka_config() if security is not None else {}),
        }
    )
    topics = {name: prefix + name for name in TOPIC_BY_TYPE.values()}
    started = time.monotonic()
    try:
        with _Progress(len(messages), enabled=progress) as advance:
            _send_all(producer, messages, topics, speed, advance)
            if producer.flush(FLUSH_TIMEOUT_S) > 0:
                raise ReplayError(f"broker {bootstrap} did not take every message in time")
    finally:
        producer.flush(0)
    if failures:
        raise ReplayError(f"{len(failures)} messages not delivered, first: {failures[0]}")
    return ReplayStats(len(messages), loaded.skipped, time.monotonic() - started)


def _send_all(
    producer: Producer,
    messages: Sequence[Message],
    topics: dict[str, str],
    speed: float | None,
    advance: Any,
) -> None:
    produce = producer.produce
    first_ts = messages[0].ts if messages else 0
    wall_start = time.monotonic()
    for number, m in enumerate(messages, start=1):
        if speed is not None:
            delay = pacing_delay(first_ts, m.ts, wall_start, time.monotonic(), speed)
            if delay > 0:
                time.sleep(delay)
        try:
            produce(topics[m.topic], m.value, m.key)
        except BufferError:
            # The local queue is full: let librdkafka deliver, then retry once.
            producer.poll(1.0)
            produce(topics[m.topic], m.value, m.key)
        if number % PROGRESS_EVERY == 0:
            producer.poll(0)  # serve delivery reports so the queue drains
            advance(PROGRESS_EVERY)
    advance(len(messages) % PROGRESS_EVERY)


class _Progress:
    """A rich progress bar with rate and ETA, or nothing when disabled (tests, benchmarks)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._total = total
        self._enabled = enabled
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self._enabled:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} ev/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.start()
        task = self._bar.add_task("replay", total=self._total, rate="-")

        def advance(n: int) -> None:
            self._bar.advance(task, n)
            speed = self._bar.tasks[task].speed
            self._bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
