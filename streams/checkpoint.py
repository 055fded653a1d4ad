"""Detector state that survives a killed worker: a changelogged checkpoint per input partition.

Input topics are keyed by plaza and co-partitioned, so every state of a plaza (and the
dedup ids of its events) belongs to one input partition number. The ingest step saves
that state, with the offsets it covers, to a compacted changelog topic (partition n for
input partition n) every few seconds. A worker that takes a partition over (restart or
rebalance) restores the checkpoint on the partition's first event, reads back from the
log what the group already committed past the checkpoint, and skips what the
checkpoint already covers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.changelog import ChangelogWriter
from streams.forked import SnapshotError, encode_in_child
from tollmon.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointPolicy,
    PartitionCheckpoint,
    PartitionProgress,
    decode_checkpoint,
    encode_checkpoint,
    newest_ids_within,
)
from tollmon.ingest import Ingest
from tollmon.pipeline import Pipeline

log = logging.getLogger(__name__)

CHANGELOG = "detector_checkpoints-changelog"
# A partition's checkpoint holds all its plazas and dedup ids in one message.
MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024
# Room in a checkpoint message for all but the plazas' state and the dedup ids: the
# offsets, msgpack's framing, and the record's key and overhead in the produce request.
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
Handler = Callable[[InputMessage], Awaitable[str | None]]


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
        self._progress: dict[int, PartitionProgress] = {}
        self._plazas: dict[int, set[str]] = {}
        self._revoked: set[int] = set()
        self._saving: asyncio.Future[None] | None = None  # the save round under way

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
        return progress is not None and progress.next_offsets.get(message.topic) == message.offset

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
        """Start saving the checkpoints that are due; call once their outputs are flushed.

        The state is taken now and encoded in a forked child (see streams/forked.py), so
        the event loop never waits for a large partition's pickle. Once one partition is
        due, every partition that took input in since its last save is saved with it, in
        the same child: each fork costs the event loop a pause and the copy-on-write of
        the pages it touches next, so the rounds, not the partitions, are counted.
        """
        if self._saving is not None:
            return
        now_s = self._clock()
        if not any(p.is_due(now_s, self._policy) for p in self._progress.values()):
            return
        batch = [
            (partition, progress, progress.covered())
            for partition, progress in self._progress.items()
            if progress.events_since_save
        ]
        for _, progress, _ in batch:
            # Counted as saved from the moment the state is taken; its cost is known later.
            progress.saved(now_s, cost_s=progress.save_cost_s)
        self._saving = asyncio.ensure_future(self._save_forked(batch))
        self._saving.add_done_callback(self._saved)

    def _saved(self, done: asyncio.Future[None]) -> None:
        self._saving = None
        if not done.cancelled() and (exc := done.exception()) is not None:
            log.warning("checkpoint round failed: %r", exc)

    async def _save_forked(self, batch: list[_Due]) -> None:
        started = time.perf_counter()

        def encode_all() -> bytes:
            return _encode_round([self._encode_or_refuse(p, offsets) for p, _, offsets in batch])

        try:
            values = _decode_round(await encode_in_child(encode_all))
        except (SnapshotError, OSError, msgspec.DecodeError) as exc:
            log.warning("partitions %s: checkpoints not saved: %s", [p for p, *_ in batch], exc)
            return
        # The child's time still takes a core: the policy keeps it to its share.
        cost_s = time.perf_counter() - started
        for (partition, progress, _), saved in zip(batch, values, strict=True):
            progress.save_cost_s = cost_s
            if saved.refused:
                log.warning("checkpoint not saved: %s", saved.refused)
                continue
            value = saved.value

            def current(partition: int = partition, progress: PartitionProgress = progress) -> bool:
                # Neither revoked nor taken over again since the fork, up to the send.
                return self._progress.get(partition) is progress and partition not in self._revoked

            await self._store(partition, value, current)

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
        progress = PartitionProgress.after(checkpoint.offsets, now_s)
        self._ingest.restore_dedup_ids(partition, checkpoint.dedup_ids)
        try:
            restored = self._pipeline.restore(checkpoint.plazas, now_s)
        except CheckpointError as exc:
            log.warning("partition %d: detector state not restored: %s", partition, exc)
            restored = []
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
            plaza_id = await handle(message)
            self.taken(message, plaza_id)
            fed += 1
        for tp, (_, end) in ranges.items():
            progress.next_offsets[tp.topic] = max(progress.next_offsets.get(tp.topic, 0), end)
        return fed

    async def _load(self, reader: OpenReader, partition: int) -> PartitionCheckpoint | None:
        stored = await reader.latest(TopicPartition(self._changelog, partition))
        if stored is None:
            return None
        try:
            return decode_checkpoint(stored)
        except CheckpointError as exc:
            log.warning("partition %d: checkpoint ignored: %s", partition, exc)
            return None

    async def _save(self, partition: int, progress: PartitionProgress, now_s: float) -> None:
        """Save at once, encoded on the event loop (a take-over, whose save must not be late)."""
        started = time.perf_counter()
        encoded = self._encode_or_refuse(partition, progress.covered())
        if encoded.refused:
            log.warning("checkpoint not saved: %s", encoded.refused)
        else:
            await self._store(partition, encoded.value)
        progress.saved(now_s, cost_s=time.perf_counter() - started)

    def _encode_or_refuse(self, partition: int, offsets: dict[str, int]) -> _Encoded:
        """`_encode`, or why not: a partition too large must not stop others' saves."""
        try:
            return _Encoded(self._encode(partition, offsets))
        except CheckpointError as exc:
            return _Encoded(b"", str(exc))

    def _encode(self, partition: int, offsets: dict[str, int]) -> bytes:
        """The partition's checkpoint, within the changelog's message limit.

        The plazas' state goes whole; the dedup ids fill what room is left, newest first
        (`newest_ids_within`). Plazas whose state alone is over the limit cannot be saved:
        spread them over more input partitions.
        """
        plazas = self._pipeline.snapshot(self._plazas.get(partition, ()))
        room = self._max_bytes - CHECKPOINT_HEADROOM_BYTES - len(plazas)
        if room < 0:
            raise CheckpointError(
                f"partition {partition}: its plazas' state alone is {len(plazas):,} bytes,"
                f" over the changelog's limit of {self._max_bytes:,}; give the input topics"
                " more partitions"
            )
        return encode_checkpoint(
            PartitionCheckpoint(
                version=FORMAT_VERSION,
                offsets=offsets,
                plazas=plazas,
                dedup_ids=newest_ids_within(self._ingest.dedup_ids(partition), room),
            )
        )

    async def _store(
        self, partition: int, value: bytes, current: Callable[[], bool] = lambda: True
    ) -> None:
        # The changelog partition is the input partition.
        await self._writer.write(self._changelog, partition, _key(partition), value, current)


# A partition to save: its number, progress, and the offsets its checkpoint covers.
_Due = tuple[int, PartitionProgress, dict[str, int]]


class _Encoded(msgspec.Struct, array_like=True, frozen=True):
    """One partition's checkpoint from a save round's child, or why it has none."""

    value: bytes
    refused: str = ""


# The checkpoints of one save round, as the forked child hands them over.
_encode_round = msgspec.msgpack.Encoder().encode
_decode_round = msgspec.msgpack.Decoder(list[_Encoded]).decode


def _key(partition: int) -> bytes:
    return str(partition).encode()


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

    async def latest(self, tp: TopicPartition) -> bytes | None:
        """The newest record's value in `tp`, None if it is empty.

        A checkpoint changelog partition holds one key (its input partition), so its
        last record is the newest checkpoint; compaction keeps that one.
        """
        consumer = self._consumer
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        if end <= begin:
            return None
        value: bytes | None = None
        consumer.seek(tp, end - 1)
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.offset < end:
                    value = record.value
        return value

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
