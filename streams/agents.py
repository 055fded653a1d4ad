"""Agents and timers: decode and route; the logic lives in tollmon/ and detectors/."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from aiokafka.errors import KafkaError

from streams.alertmanager import AlertmanagerPusher
from streams.emitter import Emitter
from streams.topics import Topics
from tollmon.events import WeighMeasurement
from tollmon.ingest import DeadLetter, Ingest, Source
from tollmon.pipeline import Pipeline
from tollmon.recorder import MetricsRecorder

TICK_S = 1.0  # idle feeds and data gaps are judged on processing time, this often
PUSH_S = 2.0  # Alertmanager is told of new alerts within this, re-sent per AlertBook
LAG_S = 5.0  # one scrape interval: each scrape sees a fresh consumer lag


@dataclass(frozen=True)
class Worker:
    """Everything the agents call, built once by the app factory."""

    topics: Topics
    ingest: Ingest
    pipeline: Pipeline
    recorder: MetricsRecorder
    emitter: Emitter
    pusher: AlertmanagerPusher | None
    clock: Callable[[], float]
    # Input topics are keyed by plaza and co-partitioned: a plaza has one partition number.
    plaza_partition: dict[str, int] = field(default_factory=dict)


class InputMessage(Protocol):
    """What the agent reads of a consumed message (a Faust `Message` has all of it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


async def ingest_batch(worker: Worker, messages: Iterable[InputMessage]) -> None:
    """Validate, detect, record and send on every message of a batch, in order."""
    for message in messages:
        source = Source(message.topic, message.partition, message.offset, message.key)
        outcome = worker.ingest.accept(message.value, source)
        if isinstance(outcome, DeadLetter):
            await worker.topics.deadletter.send(
                key=outcome.key, value=outcome.value, headers=list(outcome.headers)
            )
            continue
        worker.plaza_partition[outcome.plaza_id] = message.partition
        worker.recorder.event(outcome)
        await worker.emitter.emit(worker.pipeline.process(outcome, worker.clock()))
        if isinstance(outcome, WeighMeasurement):
            await worker.topics.by_pass.send(key=outcome.pass_id.encode(), value=message.value)


def register_agents(app: faust.App, worker: Worker) -> None:
    """Consume the input topics; run the periodic processing-time work."""

    plaza_partition = worker.plaza_partition

    async def ingest_events(stream: Any) -> None:
        async for record in stream.events():
            await ingest_batch(worker, (record.message,))

    app.agent(worker.topics.inputs, name="ingest")(ingest_events)

    inputs = set(worker.topics.inputs.topics)

    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        gone = {tp.partition for tp in revoked if tp.topic in inputs}
        moved = [plaza for plaza, partition in plaza_partition.items() if partition in gone]
        worker.pipeline.forget_feeds(moved)
        for plaza in moved:
            del plaza_partition[plaza]
        for tp in revoked:
            if tp.topic in inputs:
                worker.recorder.forget_consumer_lag(tp.topic, tp.partition)

    # mode's signal stubs require a keyword-only `signal` parameter this handler never uses.
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]

    async def tick() -> None:
        await worker.emitter.emit(worker.pipeline.tick(worker.clock()))

    app.timer(TICK_S, name="tick")(tick)

    async def record_consumer_lag() -> None:
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in inputs]
        if not assigned:
            return
        try:
            highwaters = await consumer.highwaters(*assigned)
            for tp in assigned:
                # The fetch position, not the commit: lag of what has not even been read yet.
                position = await consumer.position(tp)
                if position is not None and tp in highwaters:
                    lag = max(0, highwaters[tp] - position)
                    worker.recorder.consumer_lag(tp.topic, tp.partition, lag)
        except KafkaError:
            # A rebalance revoked a partition between the two calls: a metric must never
            # crash the worker; the next round reads the new assignment.
            return

    app.timer(LAG_S, name="consumer_lag")(record_consumer_lag)

    pusher = worker.pusher
    if pusher is not None:

        async def push_alerts() -> None:
            await pusher.push()

        app.timer(PUSH_S, name="push_alerts")(push_alerts)
