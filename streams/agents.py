"""Agents and timers: decode and route; the logic lives in tollmon/ and detectors/."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.types import TP

from streams.alertmanager import AlertmanagerPusher
from streams.checkpoint import Checkpoints, InputMessage
from streams.emitter import Emitter
from streams.topics import Topics
from streams.weighing_agents import source_header
from tollmon.events import Event, WeighMeasurement
from tollmon.ingest import DeadLetter, Ingest, Source
from tollmon.pipeline import Outputs, Pipeline
from tollmon.recorder import MetricsRecorder

log = logging.getLogger(__name__)

TICK_S = 1.0  # idle feeds and data gaps are judged on processing time, this often
PUSH_S = 2.0  # Alertmanager is told of new alerts within this, re-sent per AlertBook
# One scrape interval: each scrape sees a fresh consumer lag; also how often fetch
# positions are compared with what reached the ingest step.
FETCH_WATCH_S = 5.0
# Faust commits every 2.8 s: a commit unchanged across two looks this far apart is stuck.
COMMIT_WATCH_S = 5.0
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
    # None only outside a Faust app (in-process runs): no state is saved or restored.
    checkpoints: Checkpoints | None = None


class _Batch:
    """Outputs of the input taken in so far, staged together and flushed at once."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        # One processing time per batch: a batch spans milliseconds of consumption.
        self.now_s = worker.clock()
        self._out = Outputs()
        self._accepted: list[Event] = []

    def take(self, message: InputMessage) -> str | None:
        """Validate and detect one message; its plaza, or None for a dead letter."""
        worker = self._worker
        source = Source(message.topic, message.partition, message.offset, message.key)
        outcome = worker.ingest.accept(message.value, source)
        if isinstance(outcome, DeadLetter):
            worker.emitter.stage_message(
                worker.topics.deadletter, outcome.key, outcome.value, list(outcome.headers)
            )
            return None
        self._accepted.append(outcome)
        worker.pipeline.process(outcome, self.now_s, self._out)
        if isinstance(outcome, WeighMeasurement):
            worker.emitter.stage_message(
                worker.topics.by_pass,
                outcome.pass_id.encode(),
                message.value,
                [source_header(message.partition)],
            )
        return outcome.plaza_id

    async def flush(self) -> None:
        """Record what was taken in and hand every staged output to the producer."""
        worker = self._worker
        worker.recorder.events(self._accepted)
        worker.emitter.stage(self._out)
        self._out, self._accepted = Outputs(), []
        await worker.emitter.flush()


async def ingest_batch(worker: Worker, messages: Iterable[InputMessage]) -> None:
    """Validate, detect and record every message of a batch, then hand its outputs on.

    Nothing is awaited per event: the batch's outputs are collected, staged, and
    flushed to the producer once, before the caller acknowledges the batch, and only
    then may a detector checkpoint be saved (it must never cover an input whose
    outputs are not on their way). Messages a checkpoint already covers are skipped;
    a partition's first message, or one after offsets Faust never delivered, first
    has the missing input read back from the log (flushed message by message).
    """
    checkpoints = worker.checkpoints
    batch = _Batch(worker)

    async def handle(message: InputMessage) -> str | None:
        plaza_id = batch.take(message)
        await batch.flush()
        return plaza_id

    if checkpoints is None:
        for message in messages:
            batch.take(message)
        await batch.flush()
        return
    for message in messages:
        if not checkpoints.settled(message) and not await checkpoints.admit(message, handle):
            continue
        checkpoints.taken(message, batch.take(message))
    await batch.flush()
    checkpoints.flushed()
    checkpoints.save_due()


def register_agents(app: faust.App, worker: Worker) -> None:
    """Consume the input topics; run the periodic processing-time work."""
    checkpoints = worker.checkpoints
    if checkpoints is None:
        raise ValueError("a worker's agents need its detector checkpoints")

    async def ingest_events(stream: Any) -> None:
        # Faust acknowledges a batch when the next one is asked for, after its outputs
        # were handed to the producer; it flushes the producer before committing.
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            await ingest_batch(worker, [event.message for event in events])

    app.agent(worker.topics.inputs, name="ingest")(ingest_events)

    inputs = set(worker.topics.inputs.topics)

    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        checkpoints.on_revoked(tp.partition for tp in revoked if tp.topic in inputs)
        for tp in revoked:
            if tp.topic in inputs:
                worker.recorder.forget_consumer_lag(tp.topic, tp.partition)

    async def on_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        assigned: set[Any] = args[0] if args else kwargs.get("assigned", set())
        checkpoints.on_assigned(tp.partition for tp in assigned if tp.topic in inputs)

    # mode's signal stubs require a keyword-only `signal` parameter these handlers never use.
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]

    async def tick() -> None:
        await worker.emitter.emit(worker.pipeline.tick(worker.clock()))

    app.timer(TICK_S, name="tick")(tick)

    async def watch_fetch_positions() -> None:
        # The fetch positions of the input partitions, read once per round, serve two
        # ends: consumer lag (what has not even been read yet) and records Faust fetched
        # but dropped at the tail of a partition, where no later message reveals the
        # hole: those are sought back to and delivered again.
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in inputs]
        if not assigned:
            return
        try:
            highwaters = await consumer.highwaters(*assigned)
            positions: dict[Any, int] = {}
            for tp in assigned:
                position = await consumer.position(tp)
                if position is not None:
                    positions[tp] = position
                    if tp in highwaters:
                        lag = max(0, highwaters[tp] - position)
                        worker.recorder.consumer_lag(tp.topic, tp.partition, lag)
            for tp, offset in checkpoints.undelivered(positions).items():
                log.warning(
                    "%s[%d]: fetched up to %d but nothing past %d arrived; seeking back",
                    tp.topic,
                    tp.partition,
                    positions[tp],
                    offset,
                )
                await consumer.seek(TP(tp.topic, tp.partition), offset)
        except KafkaError:
            # A rebalance revoked a partition meanwhile: this must never crash the
            # worker; the next round reads the new assignment.
            return

    app.timer(FETCH_WATCH_S, name="watch_fetch_positions")(watch_fetch_positions)

    async def unstick_commits() -> None:
        try:
            await checkpoints.unstick_commits()
        except KafkaError:
            # A rebalance meanwhile: the next round looks at the new assignment.
            return

    app.timer(COMMIT_WATCH_S, name="unstick_commits")(unstick_commits)

    pusher = worker.pusher
    if pusher is not None:

        async def push_alerts() -> None:
            await pusher.push()

        app.timer(PUSH_S, name="push_alerts")(push_alerts)
