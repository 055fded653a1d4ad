"""The benchmark's Kafka side: topics, producing the load, bare consumers, reading outputs.

Everything here runs in the benchmark process, beside (not inside) the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from benchmarks.synthetic import TOPICS, Load
from tollmon.events import Event
from tollmon.settings import INPUT_TOPICS

PARTITIONS = 4  # the worker's default (TOLLMON_PARTITIONS)
ALERTS_TOPIC = "toll.alerts"
ESTIMATES_TOPIC = "toll.queue.estimates"
# The broker stamps output messages when it appends them: "on the output topic" is then
# a broker time, the same clock as the benchmark's (one machine).
_OUTPUT_CONFIG = {"message.timestamp.type": "LogAppendTime"}
# Paced produce: a short linger keeps the producer's own batching delay out of latency.
_PACED = {"linger.ms": 2, "acks": 1, "queue.buffering.max.messages": 2_000_000}
_FAST = {
    "linger.ms": 20,
    "batch.size": 1 << 20,
    "acks": 1,
    "queue.buffering.max.messages": 2_000_000,
}


def create_topics(bootstrap: str, prefix: str) -> None:
    """Inputs, dead letters and outputs under `prefix`; outputs stamped at append time."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(prefix + t, PARTITIONS, 1) for t in (*INPUT_TOPICS, "toll.deadletter")]
    new += [
        NewTopic(prefix + t, PARTITIONS, 1, config=_OUTPUT_CONFIG)
        for t in (ALERTS_TOPIC, ESTIMATES_TOPIC)
    ]
    for future in admin.create_topics(new).values():
        future.result(30)


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Remove every topic of a run, so repeated runs do not fill the broker's disk."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # Faust names its own topics (changelogs, assignor) after the app id: prefix with dashes.
    app_topics = prefix.replace(".", "-")
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith((prefix, app_topics))]
    if names:
        for future in admin.delete_topics(names).values():
            with contextlib.suppress(KafkaException):  # already gone: best-effort clean-up
                future.result(30)


def produce(load: Load, bootstrap: str, prefix: str, *, paced: bool) -> npt.NDArray[np.float64]:
    """Send every message; paced: each when the wall clock reaches its `ts`.

    Returns each message's produce time (epoch s).
    """
    producer = Producer({"bootstrap.servers": bootstrap, **(_PACED if paced else _FAST)})
    names = [prefix + t for t in TOPICS]
    produced_at = np.empty(len(load), dtype=np.float64)
    due = load.ts / 1000.0
    clock, sleep, send = time.time, time.sleep, producer.produce
    for i, (value, key, topic) in enumerate(zip(load.values, load.keys, load.topic, strict=True)):
        now = clock()
        if paced and due[i] > now + 0.001:
            sleep(due[i] - now)
            now = clock()
        try:
            send(names[topic], value, key)
        except BufferError:
            producer.poll(0.5)
            send(names[topic], value, key)
        produced_at[i] = now
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(60) > 0:
        raise RuntimeError("the broker did not take every message within 60 s")
    return produced_at


@dataclass(frozen=True)
class ConsumeRate:
    """A bare consumer's pass over the backlog."""

    client: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def bare_confluent(bootstrap: str, prefix: str, total: int, group: str) -> ConsumeRate:
    """Read and decode `total` messages with confluent-kafka; time first to last message."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([prefix + t for t in INPUT_TOPICS])
    decode = _decoder.decode
    seen, started = 0, 0.0
    deadline = time.monotonic() + 300
    try:
        while seen < total and time.monotonic() < deadline:
            # Never ask for more than is left: consume() waits out its timeout for a full batch.
            batch = consumer.consume(num_messages=min(10_000, total - seen), timeout=1.0)
            if batch and not started:
                started = time.perf_counter()
            for message in batch:
                value = message.value()
                if message.error() is None and value is not None:
                    decode(value)
                    seen += 1
        return ConsumeRate("confluent-kafka", seen, time.perf_counter() - started)
    finally:
        consumer.close()


def bare_aiokafka(bootstrap: str, prefix: str, total: int, group: str) -> ConsumeRate:
    """Read and decode `total` messages with aiokafka (the client Faust uses)."""
    return asyncio.run(_bare_aiokafka(bootstrap, prefix, total, group))


async def _bare_aiokafka(bootstrap: str, prefix: str, total: int, group: str) -> ConsumeRate:
    consumer = AIOKafkaConsumer(
        *(prefix + t for t in INPUT_TOPICS),
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    decode = _decoder.decode
    seen, started = 0, 0.0
    deadline = time.monotonic() + 300
    try:
        while seen < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batches and not started:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    decode(record.value)
                    seen += 1
        return ConsumeRate("aiokafka", seen, time.perf_counter() - started)
    finally:
        await consumer.stop()


class GroupProgress:
    """How many input messages a consumer group has committed, read from the broker.

    Costs the worker nothing (a /metrics scrape of 10^4 plazas would cost it seconds).
    """

    def __init__(self, bootstrap: str, prefix: str, group: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._partitions = [
            TopicPartition(prefix + t, p) for t in INPUT_TOPICS for p in range(PARTITIONS)
        ]

    def committed(self) -> int:
        offsets = self._consumer.committed(self._partitions, timeout=10)
        return sum(max(0, tp.offset) for tp in offsets)

    def close(self) -> None:
        self._consumer.close()


@dataclass(frozen=True)
class OutputMessage:
    key: bytes
    value: bytes
    appended_s: float


def read_topic(bootstrap: str, topic: str) -> list[OutputMessage]:
    """Every message now in `topic`, with the broker's append time."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-reader", "enable.auto.commit": False}
    )
    try:
        ends: dict[int, int] = {}
        assignment = []
        for p in range(PARTITIONS):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, low))
        consumer.assign(assignment)
        out: list[OutputMessage] = []
        done: set[int] = set()
        deadline = time.monotonic() + 120
        while len(done) < len(ends) and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10_000, timeout=1.0):
                if m.error() is not None:
                    continue
                out.append(OutputMessage(m.key() or b"", m.value() or b"", m.timestamp()[1] / 1000))
                partition, offset = m.partition(), m.offset()
                if partition is not None and offset is not None and offset + 1 >= ends[partition]:
                    done.add(partition)
        return out
    finally:
        consumer.close()
