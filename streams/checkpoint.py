"""Detector state that survives a killed worker: a changelogged checkpoint per input partition.

Input topics are keyed by plaza and co-partitioned, so every state of a plaza (and the
dedup ids of its events) belongs to one input partition number. The ingest step saves
that state, with the offsets it covers, to a compacted changelog topic (partition n for
input partition n) every few seconds. A worker that takes a partition over (restart or
rebalance) restores the checkpoint on the partition's first event, reads back from the
log what the group already committed past the checkpoint, and skips what the
checkpoint already covers.

A save round encodes its partition's plazas on the event loop, a few after each input
batch, within a share of the processing time (`CheckpointPolicy.max_share`), so that
no batch waits long for it and no process is forked: the dedup ids and offsets are
taken when the round begins, and each plaza records the offsets it was encoded at. A
restore reads back from the round's start; an event a restored plaza already holds goes
to the dedup memory, not to its detectors.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.changelog import ChangelogWriter
from tollmon.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointPolicy,
    PartitionCheckpoint,
    PartitionProgress,
    PlazaCheckpoint,
    checkpoint_parts,
    decode_part,
    newest_complete,
)
from tollmon.ingest import Ingest
from tollmon.pipeline import Pipeline

log = logging.getLogger(__name__)

CHANGELOG = "detector_checkpoints-changelog"
# A partition's checkpoint goes in parts of up to this size (records of the changelog).
MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024
# Room in a part for all but its share of the checkpoint: the part's header, msgpack's
# framing, and the record's key and overhead in the produce request.
CHECKPOINT_HEADROOM_BYTES = 64 * 1024
CHANGELOG_CONFIG = {
    "max.message.bytes": str(MAX_CHECKPOINT_BYTES),
    # Only the newest checkpoint of a partition matters: small segments let compaction
    # drop the old ones soon, so a recovering worker reads little more than the newest.
    "segment.bytes": str(64 * 1024 * 1024),
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
}
# A take-over's reads share one consumer, which fetches ahead: once a read is done, a
# fetch waits at its partition's end for up to this long, and the broker answers a
# connection in order, so it holds up the next read's requests (aiokafka waits 500 ms).
READ_WAIT_MS = 50


class InputMessage(Protocol):
    """What the ingest step needs of a message, from Faust or from a read-back."""

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


# Processes one input message; returns the plaza of a valid event, None for a dead letter.
# The mapping holds, per plaza, the last offset of the message's topic its restored state
# already has: such an event only goes to the dedup memory.
Handler = Callable[[InputMessage, Mapping[str, int]], Awaitable[str | None]]


class Checkpoints:
    """Saves, restores and completes the detector state of this worker's input partitions."""

    def __init__(
        self,
        changelog: str,
        ingest: Ingest,
        pipeline: Pipeline,
        inputs: Iterable[str],
        reader: LogReader,
        writer: ChangelogWriter,
        clock: Callable[[], float],
        policy: CheckpointPolicy,
        max_bytes: int = MAX_CHECKPOINT_BYTES,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._changelog = changelog  # partition n holds input partition n's checkpoints
        self._ingest = ingest
        self._pipeline = pipeline
        self._inputs = tuple(inputs)
        self._reader = reader
        self._writer = writer
        self._clock = clock
        self._policy = policy
        self._max_bytes = max_bytes
        self._timer = timer  # measures what encoding costs the event loop
        self._credit_s = 0.0  # event-loop time the saves may still take now
        self._credited_at_s: float | None = None
        self._progress: dict[int, PartitionProgress] = {}
        self._plazas: dict[int, set[str]] = {}
        self._revoked: set[int] = set()
        self._round: _Round | None = None  # the save under way, encoded slice by slice
        self._storing: asyncio.Future[None] | None = None  # its record, on its way

    @property
    def changelog(self) -> str:
        """The compacted topic the checkpoints are written to."""
        return self._changelog

    async def admit(self, message: InputMessage, handle: Handler) -> bool:
        """Whether the ingest step should process `message`; False for a re-delivery.

        The first message of a partition restores its checkpoint and first feeds what
        the log holds between the checkpoint and the group's committed offset; a
        message that comes after offsets never delivered has those fed first.
        """
        partition = message.partition
        progress = self._progress.get(partition)
        if progress is None:
            progress = await self._take_over(partition, handle)
        if progress.is_redelivery(message.topic, message.offset):
            return False
        missing = progress.missing_before(message.topic, message.offset)
        if missing is not None:
            await self._fill_gap(progress, message, missing, handle)
        return True

    async def _fill_gap(
        self, progress: PartitionProgress, message: InputMessage, first: int, handle: Handler
    ) -> None:
        tp = TopicPartition(message.topic, message.partition)
        async with self._reader.open() as reader:
            fed = await self._feed(reader, progress, {tp: (first, message.offset)}, handle)
        log.info(
            "%s[%d]: offsets %d..%d were not delivered; %d events read back",
            message.topic,
            message.partition,
            first,
            message.offset - 1,
            fed,
        )

    def settled(self, message: InputMessage) -> bool:
        """Whether `message` simply continues its partition: nothing to restore, skip or fill."""
        progress = self._progress.get(message.partition)
        return (
            progress is not None
            and progress.next_offsets.get(message.topic) == message.offset
            and message.topic not in progress.coverage
        )

    def covered_plazas(self, message: InputMessage) -> Mapping[str, int]:
        """Per restored plaza, the last offset of `message`'s topic its state already holds."""
        return self._progress[message.partition].covered_plazas(message.topic)

    def taken(self, message: InputMessage, plaza_id: str | None) -> None:
        """`message` went through the detectors (or to the dead letters)."""
        partition = message.partition
        if plaza_id is not None:
            self._plazas.setdefault(partition, set()).add(plaza_id)
        self._progress[partition].taken(message.topic, message.offset)

    def flushed(self) -> None:
        """Everything taken in so far has its outputs with the producer."""
        for progress in self._progress.values():
            progress.flushed()

    def flushed_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Per input partition, the offset before which every input went through the
        detectors and had its outputs flushed: what may be committed."""
        offsets: dict[TopicPartition, int] = {}
        for tp in partitions:
            progress = self._progress.get(tp.partition)
            if progress is not None and tp.topic in progress.flushed_offsets:
                offsets[tp] = progress.flushed_offsets[tp.topic]
        return offsets

    def save_due(self) -> None:
        """Go on with the save under way, or begin the one due; call with every output of
        the input taken in so far flushed (a plaza's state must never cover an input
        whose outputs are not on their way).

        The saves take their share of the processing time since the last call
        (`CheckpointPolicy.max_share`), a plaza at a time; the round's record is written
        once all its plazas are in. One round at a time: the most overdue partition first.
        """
        self._accrue()
        if self._storing is not None or self._credit_s <= 0:
            return
        round_ = self._round
        if round_ is not None and not self._is_current(round_.partition, round_.progress):
            round_ = None  # revoked or taken over again since it began
        if round_ is None:
            round_ = self._begin_due()
        self._round = round_
        if round_ is None or not self._encode_some(round_):
            return
        self._round = None
        records = self._finish(round_)
        partition, progress = round_.partition, round_.progress

        def current() -> bool:
            return self._is_current(partition, progress)

        self._storing = asyncio.ensure_future(self._store(partition, records, current))
        self._storing.add_done_callback(self._stored)

    def _accrue(self) -> None:
        now_s = self._clock()
        if self._credited_at_s is not None:
            earned = self._policy.max_share * max(0.0, now_s - self._credited_at_s)
            self._credit_s = min(self._policy.max_slice_s, self._credit_s + earned)
        self._credited_at_s = now_s

    def _begin_due(self) -> _Round | None:
        now_s = self._clock()
        due = [
            (progress.saved_at_s, partition, progress)
            for partition, progress in self._progress.items()
            if partition not in self._revoked and progress.is_due(now_s, self._policy)
        ]
        if not due:
            return None
        _, partition, progress = min(due, key=lambda d: d[:2])
        progress.saved(now_s)  # counted from the moment the round takes its offsets
        return self._begin(partition, progress)

    def _begin(self, partition: int, progress: PartitionProgress) -> _Round:
        started = self._timer()
        round_ = _Round(
            partition,
            progress,
            progress.covered(),
            self._ingest.dedup_ids(partition),
            sorted(self._plazas.get(partition, ()), reverse=True),
        )
        self._spent(started)
        return round_

    def _encode_some(self, round_: _Round, *, all_now: bool = False) -> bool:
        """Encode `round_`'s plazas while the credit lasts (`all_now`: every one); whether
        all are in."""
        offsets = round_.progress.covered()
        while round_.todo and (all_now or self._credit_s > 0):
            started = self._timer()
            plaza_id = round_.todo.pop()
            state = self._pipeline.snapshot([plaza_id])
            round_.plazas.append(PlazaCheckpoint(plaza_id, offsets, state))
            self._spent(started)
        return not round_.todo

    def _finish(self, round_: _Round) -> list[tuple[bytes, bytes]]:
        """The round's changelog records."""
        started = self._timer()
        records = self._encode(round_)
        self._spent(started)
        return records

    def _spent(self, started: float) -> None:
        self._credit_s -= self._timer() - started

    def _stored(self, done: asyncio.Future[None]) -> None:
        self._storing = None
        if not done.cancelled() and (exc := done.exception()) is not None:
            log.warning("checkpoint not saved: %r", exc)

    def _is_current(self, partition: int, progress: PartitionProgress) -> bool:
        """Neither revoked nor taken over again since `progress` was the partition's."""
        return self._progress.get(partition) is progress and partition not in self._revoked

    def on_revoked(self, partitions: Iterable[int]) -> None:
        """Partitions leave this worker unless the assignment that follows gives them back."""
        self._revoked.update(partitions)

    def on_assigned(self, partitions: Iterable[int]) -> list[str]:
        """Forget the state of partitions now served elsewhere; returns their plazas."""
        gone = self._revoked - set(partitions)
        self._revoked.clear()
        plazas: list[str] = []
        for partition in gone:
            plazas.extend(self._plazas.pop(partition, ()))
            self._progress.pop(partition, None)
            self._ingest.forget_partition(partition)
        self._pipeline.drop(plazas)
        return plazas

    async def _take_over(self, partition: int, handle: Handler) -> PartitionProgress:
        started = time.perf_counter()
        now_s = self._clock()
        # One consumer reads the whole take-over. The committed offsets come first, before
        # any fetch: the group coordinator is looked up on the connection the fetches use.
        async with self._reader.open(committed=True) as reader:
            # The consumer resumes at the committed offsets. Without a checkpoint the state
            # starts empty there; with one, whatever lies between the checkpoint and those
            # offsets was taken in by the previous owner after its last save and is read back.
            committed = await reader.committed(
                [TopicPartition(topic, partition) for topic in self._inputs]
            )
            checkpoint = await self._load(reader, partition)
            progress, ranges = self._restore(partition, checkpoint, committed, now_s)
            self._progress[partition] = progress
            fed = await self._feed(reader, progress, ranges, handle)
        progress.flushed()  # the read-back flushed message by message
        # Saved at once, so a worker killed again soon neither repeats the read-back nor
        # commits offsets past a partition that has no checkpoint at all.
        await self._save(partition, progress, self._clock())
        log.info(
            "partition %d taken over: checkpoint %s, %d events read back in %.3f s",
            partition,
            "restored" if checkpoint is not None else "none",
            fed,
            time.perf_counter() - started,
        )
        return progress

    def _restore(
        self,
        partition: int,
        checkpoint: PartitionCheckpoint | None,
        committed: dict[TopicPartition, int | None],
        now_s: float,
    ) -> tuple[PartitionProgress, dict[TopicPartition, tuple[int, int]]]:
        """The partition's progress from its checkpoint, and the ranges to read back."""
        ranges: dict[TopicPartition, tuple[int, int]] = {}
        if checkpoint is None:
            progress = PartitionProgress(
                {tp.topic: offset for tp, offset in committed.items() if offset is not None},
                saved_at_s=now_s,
            )
            return progress, ranges
        self._ingest.restore_dedup_ids(partition, checkpoint.dedup_ids)
        restored: list[str] = []
        refused: list[str] = []
        for plaza in checkpoint.plazas:
            try:
                restored.extend(self._pipeline.restore(plaza.state, now_s))
            except CheckpointError as exc:
                refused.append(f"{plaza.plaza_id}: {exc}")
        if refused:
            log.warning(
                "partition %d: the detector state of %d plazas not restored (%s)",
                partition,
                len(refused),
                refused[0] if len(refused) == 1 else f"{refused[0]}; ...",
            )
        progress = PartitionProgress.restored(checkpoint, restored, now_s)
        self._plazas[partition] = set(restored)
        for tp, offset in committed.items():
            first = progress.next_offsets.get(tp.topic, 0)
            if offset is not None and offset > first:
                ranges[tp] = (first, offset)
        return progress, ranges

    async def _feed(
        self,
        reader: OpenReader,
        progress: PartitionProgress,
        ranges: dict[TopicPartition, tuple[int, int]],
        handle: Handler,
    ) -> int:
        fed = 0
        async for message in reader.read(ranges):
            if progress.is_redelivery(message.topic, message.offset):
                continue
            plaza_id = await handle(message, progress.covered_plazas(message.topic))
            self.taken(message, plaza_id)
            fed += 1
        for tp, (_, end) in ranges.items():
            progress.next_offsets[tp.topic] = max(progress.next_offsets.get(tp.topic, 0), end)
        return fed

    async def _load(self, reader: OpenReader, partition: int) -> PartitionCheckpoint | None:
        """The partition's newest complete checkpoint: its parts are the newest records,
        unless a save was cut short, whose parts then come after them."""
        tp = TopicPartition(self._changelog, partition)
        last = await reader.tail(tp, 1)
        if not last:
            return None
        try:
            newest = decode_part(last[-1])
            checkpoint = newest_complete(await reader.tail(tp, newest.index + 1))
            if checkpoint is None:
                cut_short = newest.index + 1
                checkpoint = newest_complete(await reader.tail(tp, cut_short + 2 * newest.count))
        except CheckpointError as exc:
            log.warning("partition %d: checkpoint ignored: %s", partition, exc)
            return None
        if checkpoint is None:
            log.warning("partition %d: checkpoint ignored: no complete one at its end", partition)
        return checkpoint

    async def _save(self, partition: int, progress: PartitionProgress, now_s: float) -> None:
        """Save at once, all on the event loop (a take-over, whose save must not be late)."""
        round_ = self._begin(partition, progress)
        self._encode_some(round_, all_now=True)
        await self._store(partition, self._finish(round_))
        progress.saved(now_s)

    def _encode(self, round_: _Round) -> list[tuple[bytes, bytes]]:
        """The round's checkpoint as changelog records (key, value), each within the
        changelog's message limit."""
        checkpoint = PartitionCheckpoint(
            version=FORMAT_VERSION,
            offsets=round_.offsets,
            plazas=round_.plazas,
            dedup_ids=round_.dedup_ids,
        )
        parts = checkpoint_parts(
            checkpoint, random.getrandbits(63), self._max_bytes - CHECKPOINT_HEADROOM_BYTES
        )
        return [(_key(round_.partition, index), part) for index, part in enumerate(parts)]

    async def _store(
        self,
        partition: int,
        records: list[tuple[bytes, bytes]],
        current: Callable[[], bool] = lambda: True,
    ) -> None:
        # The changelog partition is the input partition.
        await self._writer.write(self._changelog, partition, records, current)


@dataclass
class _Round:
    """A partition's save under way: its plazas are encoded a few at a time."""

    partition: int
    progress: PartitionProgress
    offsets: dict[str, int]  # what was taken in when it began
    dedup_ids: list[str]  # the partition's dedup memory then
    todo: list[str]  # plazas still to encode, the next last
    plazas: list[PlazaCheckpoint] = field(default_factory=list)


def _key(partition: int, part: int) -> bytes:
    return f"{partition}.{part}".encode()


class LogReader:
    """Opens the consumers that read the logs straight from Kafka; none of them joins a group."""

    def __init__(self, bootstrap: str, group_id: str, client_options: Mapping[str, Any]) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._options = client_options

    @asynccontextmanager
    async def open(self, *, committed: bool = False) -> AsyncIterator[OpenReader]:
        """One consumer for the reads within, stopped on leaving.

        With `committed` it also reads the group's committed offsets: it carries the
        group id, but is only ever assigned partitions by hand, so it never joins the
        group, and it commits nothing.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id if committed else None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=READ_WAIT_MS,
            **self._options,
        )
        try:
            await consumer.start()  # a failed start leaves connections to close too
            yield OpenReader(consumer)
        finally:
            await consumer.stop()


class OpenReader:
    """The reads of one consumer; each read assigns it the partitions it reads."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets (read without joining the group)."""
        return {tp: await self._consumer.committed(tp) for tp in tps}

    async def tail(self, tp: TopicPartition, records: int) -> list[bytes]:
        """The values of the newest `records` records of `tp`, oldest first; fewer if it
        holds fewer (or compaction left gaps among them)."""
        consumer = self._consumer
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        start = max(begin, end - records)
        if end <= start:
            return []
        values: list[bytes] = []
        consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.offset < end and record.value is not None:
                    values.append(record.value)
        return values

    async def read(
        self, ranges: dict[TopicPartition, tuple[int, int]]
    ) -> AsyncIterator[InputMessage]:
        """Every message in [start, end) of each partition, partition by partition in order."""
        wanted = {tp: bounds for tp, bounds in ranges.items() if bounds[0] < bounds[1]}
        if not wanted:
            return
        consumer = self._consumer
        consumer.assign(list(wanted))
        for tp, (start, _) in wanted.items():
            consumer.seek(tp, start)
        while wanted:
            batches = await consumer.getmany(*wanted, timeout_ms=1000)
            for tp, records in batches.items():
                end = wanted[tp][1]
                for record in records:
                    if record.offset < end:
                        yield record
            for tp in list(wanted):
                if await consumer.position(tp) >= wanted[tp][1]:
                    del wanted[tp]
