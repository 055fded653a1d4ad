"""Agents and timers: decode and route; the logic lives in tollmon/ and detectors/."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.alertmanager import AlertmanagerPusher
from streams.checkpoint import CHANGELOG_CONFIG, Checkpoints, InputMessage
from streams.emitter import Emitter
from streams.heap import thaw
from streams.inputs import InputConsumer, ensure_topics
from streams.topics import Topics
from streams.weighing_agents import source_header
from tollmon.events import Event, WeighMeasurement
from tollmon.ingest import Covered, DeadLetter, Ingest, Source
from tollmon.pipeline import Outputs, Pipeline
from tollmon.recorder import MetricsRecorder
from tollmon.settings import Settings

log = logging.getLogger(__name__)

_NONE_COVERED: Mapping[str, int] = {}
TICK_S = 1.0  # idle feeds and data gaps are judged on processing time, this often
PUSH_S = 2.0  # Alertmanager is told of new alerts within this, re-sent per AlertBook


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

    def take(self, message: InputMessage, covered: Mapping[str, int] = _NONE_COVERED) -> str | None:
        """Validate and detect one message; its plaza, or None for a dead letter.

        An event whose plaza's restored state already holds it (`covered`: per plaza, the
        last offset of the message's topic it holds) is only remembered by the dedup memory,
        not detected or counted again.
        """
        worker = self._worker
        source = Source(message.topic, message.partition, message.offset, message.key)
        if covered:
            outcome = worker.ingest.accept_restored(message.value, source, covered)
        else:
            outcome = worker.ingest.accept(message.value, source)
        if isinstance(outcome, DeadLetter):
            worker.emitter.stage_message(
                worker.topics.deadletter, outcome.key, outcome.value, list(outcome.headers)
            )
            return None
        if isinstance(outcome, Covered):
            return outcome.plaza_id
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
    a partition's first message, or one after offsets never delivered, first has
    the missing input read back from the log (flushed message by message).
    """
    checkpoints = worker.checkpoints
    batch = _Batch(worker)

    async def handle(message: InputMessage, covered: Mapping[str, int]) -> str | None:
        plaza_id = batch.take(message, covered)
        await batch.flush()
        return plaza_id

    if checkpoints is None:
        for message in messages:
            batch.take(message)
        await batch.flush()
        return
    for message in messages:
        if checkpoints.settled(message):
            checkpoints.taken(message, batch.take(message))
        elif await checkpoints.admit(message, handle):
            checkpoints.taken(message, batch.take(message, checkpoints.covered_plazas(message)))
    await batch.flush()
    checkpoints.flushed()
    checkpoints.save_due()


class IngestHooks:
    """The ingest step's side of the input consumer (streams.inputs.IngestHooks)."""

    def __init__(self, worker: Worker, checkpoints: Checkpoints) -> None:
        self._worker = worker
        self._checkpoints = checkpoints

    def flushed_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._checkpoints.flushed_offsets(partitions)

    def revoked(self, partitions: set[TopicPartition]) -> None:
        self._checkpoints.on_revoked(tp.partition for tp in partitions)
        for tp in partitions:
            self._worker.recorder.forget_consumer_lag(tp.topic, tp.partition)
        # Their detector state is dropped: cycles in it are for the collector to find.
        thaw()

    def assigned(self, partitions: set[TopicPartition]) -> None:
        self._checkpoints.on_assigned(tp.partition for tp in partitions)

    def lag(self, tp: TopicPartition, records: int) -> None:
        self._worker.recorder.consumer_lag(tp.topic, tp.partition, records)

    def idle(self) -> None:
        # A save due after a burst would otherwise wait for the next input: a restart in the
        # silence would read back everything since the save before.
        self._checkpoints.save_due()


def input_consumer(
    worker: Worker,
    client: Callable[[], AIOKafkaConsumer],
    settings: Settings,
    flush_outputs: Callable[[], Awaitable[None]],
    client_options: Mapping[str, Any],
) -> InputConsumer:
    """The consumer that feeds the input topics to `ingest_batch`, fetch by fetch.

    `client_options` (security) are for the admin client that creates the topics.
    """
    checkpoints = worker.checkpoints
    if checkpoints is None:
        raise ValueError("a worker's input consumer needs its detector checkpoints")

    async def process(messages: list[InputMessage]) -> None:
        await ingest_batch(worker, messages)

    async def prepare() -> None:
        # The inputs with the worker's partition count (as Faust used to declare them),
        # and the compacted checkpoint changelog, partition for partition.
        await ensure_topics(
            settings.kafka_bootstrap,
            client_options,
            {
                **{topic: (settings.partitions, {}) for topic in settings.input_topics},
                checkpoints.changelog: (settings.partitions, CHANGELOG_CONFIG),
            },
        )

    return InputConsumer(
        client,
        settings.input_topics,
        process,
        IngestHooks(worker, checkpoints),
        flush_outputs=flush_outputs,
        prepare=prepare,
    )


def register_agents(app: faust.App, worker: Worker) -> None:
    """Run the periodic processing-time work (the input consumer is a service apart)."""

    async def tick() -> None:
        await worker.emitter.emit(worker.pipeline.tick(worker.clock()))

    app.timer(TICK_S, name="tick")(tick)

    pusher = worker.pusher
    if pusher is not None:

        async def push_alerts() -> None:
            await pusher.push()

        app.timer(PUSH_S, name="push_alerts")(push_alerts)
