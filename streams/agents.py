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
from tollmon.events import Event, WeighMeasurement
from tollmon.ingest import DeadLetter, Ingest, Source
from tollmon.pipeline import Outputs, Pipeline
from tollmon.recorder import MetricsRecorder

TICK_S = 1.0  # idle feeds and data gaps are judged on processing time, this often
PUSH_S = 2.0  # Alertmanager is told of new alerts within this, re-sent per AlertBook
LAG_S = 5.0  # one scrape interval: each scrape sees a fresh consumer lag
# Input is taken in batches of up to BATCH_MAX messages, or whatever arrived within
# BATCH_WITHIN_S: per-event awaits cost more than the detectors, and 50 ms is small
# against the 1 s event-to-alert budget of SPEC §7.
BATCH_MAX = 1_000
BATCH_WITHIN_S = 0.05


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
    """Validate, detect and record every message of a batch, then hand its outputs on.

    Nothing is awaited per event: the batch's outputs are collected, staged, and
    flushed to the producer once, before the caller acknowledges the batch. Each
    output topic receives its messages in the order the detectors produced them.
    """
    ingest, pipeline, recorder, emitter = (
        worker.ingest,
        worker.pipeline,
        worker.recorder,
        worker.emitter,
    )
    topics, plaza_partition = worker.topics, worker.plaza_partition
    # One processing time per batch: a batch spans milliseconds of consumption.
    now_s = worker.clock()
    out = Outputs()
    accepted: list[Event] = []
    for message in messages:
        source = Source(message.topic, message.partition, message.offset, message.key)
        outcome = ingest.accept(message.value, source)
        if isinstance(outcome, DeadLetter):
            emitter.stage_message(
                topics.deadletter, outcome.key, outcome.value, list(outcome.headers)
            )
            continue
        plaza_partition[outcome.plaza_id] = message.partition
        accepted.append(outcome)
        pipeline.process(outcome, now_s, out)
        if isinstance(outcome, WeighMeasurement):
            emitter.stage_message(topics.by_pass, outcome.pass_id.encode(), message.value)
    recorder.events(accepted)
    emitter.stage(out)
    await emitter.flush()


def register_agents(app: faust.App, worker: Worker) -> None:
    """Consume the input topics; run the periodic processing-time work."""

    plaza_partition = worker.plaza_partition

    async def ingest_events(stream: Any) -> None:
        # Faust acknowledges a batch when the next one is asked for, after its outputs
        # were handed to the producer; it flushes the producer before committing.
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            await ingest_batch(worker, [event.message for event in events])

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
