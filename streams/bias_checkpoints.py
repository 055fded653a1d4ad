"""The scale-bias window survives a restart: the pair assessor checkpointed to Kafka.

The network-wide fit looks back over up to 200 pairs per scale, days for a quiet scale.
Kept in memory only, a restart (a deploy, a crash, a rebalance) began it again from
nothing: drift went unseen until the window refilled, and a firing SCALE_BIAS alert
lapsed in Alertmanager. The worker that assesses the pairs now saves the assessor
(`PairAssessor.checkpoint`) with the pairs-topic offset it covers, every 10 minutes of
event time (at most every 10 s of wall time; a save held back by that limit is made
once the limit has passed, pairs or none: `save_held`), to a compacted topic of one
partition, in parts like the detector checkpoints. The next owner of the pairs restores
the newest complete checkpoint before its first pair and assesses the pairs between it
and where its group's commit resumes (their outputs were published by the owner before;
only the window is rebuilt), then publishes the restored biases and firing alerts again.
Pairs given back to the worker where it left them need nothing: its window is current.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import msgspec
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from detectors.weighing import WeighPair
from streams.changelog import ChangelogWriter
from streams.checkpoint import CHECKPOINT_HEADROOM_BYTES, MAX_CHECKPOINT_BYTES, LogReader
from tollmon.checkpoint import CheckpointError, body_parts, newest_complete_as
from tollmon.weighing_flow import (
    PairAssessor,
    PairOutputs,
    decode_bias_checkpoint,
    encode_bias_checkpoint,
)

log = logging.getLogger(__name__)

BIAS_CHECKPOINTS = "scale_bias_checkpoints-changelog"
# How often the assessor is saved: in event time, so a replay saves as often per day of
# traffic as the live run; and at most once per this much wall time, so a fast replay
# (a backlog after an outage) does not spend its time saving.
SAVE_EVERY_MS = 600_000
SAVE_MIN_INTERVAL_S = 10.0
# The newest records read back on a restore: many rounds of parts even before
# compaction has run.
TAIL_RECORDS = 4096

_pair = msgspec.json.Decoder(WeighPair)


class BiasCheckpoints:
    """Saves and restores one worker's pair assessor; only the pairs' owner uses it."""

    def __init__(
        self,
        changelog: str,
        pairs_topic: str,
        writer: ChangelogWriter,
        reader: LogReader,
        clock: Callable[[], float],
    ) -> None:
        self.changelog = changelog
        self._pairs = TopicPartition(pairs_topic, 0)
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._restored = False
        self._covered_offset = -1
        # The last pair this worker's assessor took in, restored or assessed (-1: none).
        self._assessed_through = -1
        self._saved_event_ms: int | None = None
        self._saved_at_s = float("-inf")
        # A save due in event time but held back by the wall-time limit: a fast replay
        # whose pairs all came within it would otherwise end unsaved.
        self._held = False
        # Counts the revocations: a save begun before one must not land after it.
        self._ownership = 0
        # Held by the assessing agent from a pair's assessment to its `after`, and by a
        # save: a save between the two would cover a pair under the previous offset.
        self.lock = asyncio.Lock()

    def start_over(self) -> None:
        """The pairs were revoked: whoever owns them next restores before assessing."""
        self._restored = False
        self._held = False  # the next owner saves its own
        self._ownership += 1

    async def restore_once(self, assessor: PairAssessor, offset: int) -> PairOutputs | None:
        """Before the first pair since the pairs were assigned (at `offset`), restore the
        assessor; then what to publish again: the restored biases and firing alerts (the
        alerts to be re-sent to Alertmanager by this worker). None if nothing to restore."""
        if self._restored:
            return None
        self._restored = True
        if self._assessed_through >= 0 and offset == self._assessed_through + 1:
            # The pairs came back to this worker where it left them (a rebalance that moved
            # nothing): its assessor is current, and what it published still stands.
            return None
        try:
            self._covered_offset = await self._restore(assessor, offset)
        except (KafkaError, OSError) as exc:
            # The pairs go on being assessed; the window refills from them.
            log.warning("scale-bias checkpoint not read (%r): the window starts empty", exc)
            self._covered_offset = -1
        if self._covered_offset < 0:
            return None
        self._assessed_through = self._covered_offset
        return PairOutputs(alerts=assessor.estimator.firing(), biases=assessor.biases())

    def covers(self, offset: int) -> bool:
        """Whether the pair at `offset` is in the restored assessor already."""
        return offset <= self._covered_offset

    async def after(self, assessor: PairAssessor, offset: int, event_ms: int) -> None:
        """Save the assessor if it is time, having assessed the pair at `offset` (and
        published its outputs). Called holding `lock`."""
        self._assessed_through = offset
        saved = self._saved_event_ms
        if saved is None:  # the first pair here: the window, or what was restored
            self._saved_event_ms = event_ms
            self._saved_at_s = self._clock()
            return
        if event_ms - saved >= SAVE_EVERY_MS:
            self._saved_event_ms = event_ms
            self._held = True
        await self.save_held(assessor)

    async def save_held(self, assessor: PairAssessor) -> bool:
        """Make a save that came due, once the wall-time limit allows; whether one was
        made. Called holding `lock` (by `after`, and periodically by a timer)."""
        now_s = self._clock()
        if not self._held or now_s - self._saved_at_s < SAVE_MIN_INTERVAL_S:
            return False
        self._held = False
        self._saved_at_s = now_s
        offset = self._assessed_through
        whole = encode_bias_checkpoint(assessor.checkpoint(offset))
        parts = body_parts(
            whole, random.getrandbits(63), MAX_CHECKPOINT_BYTES - CHECKPOINT_HEADROOM_BYTES
        )
        records = [(f"bias.{index}".encode(), part) for index, part in enumerate(parts)]
        ownership = self._ownership
        try:
            sent = await self._writer.write(
                self.changelog, 0, records, still_wanted=lambda: self._ownership == ownership
            )
        except (KafkaError, OSError) as exc:
            # The window is intact in memory: the save is tried again on the next timer.
            log.warning("scale-bias window not saved (%r): will try again", exc)
            self._held = self._ownership == ownership
            return False
        if sent:
            log.info(
                "scale-bias window saved: %d bytes, pairs through offset %d", len(whole), offset
            )
        return sent

    async def _restore(self, assessor: PairAssessor, first_offset: int) -> int:
        """Restore the newest checkpoint and assess the pairs after it up to `first_offset`;
        the last offset the assessor then covers (-1: none, it starts empty)."""
        async with self._reader.open() as reader:
            records = await reader.tail(TopicPartition(self.changelog, 0), TAIL_RECORDS)
            try:
                checkpoint = newest_complete_as(records, decode_bias_checkpoint)
            except CheckpointError as exc:
                log.warning("scale-bias checkpoint unreadable (%s): the window starts empty", exc)
                return -1
            if checkpoint is None:
                return -1
            try:
                assessor.restore(checkpoint)
            except (KeyError, ValueError) as exc:  # a network config changed under it
                log.warning("scale-bias checkpoint does not fit this network (%r)", exc)
                return -1
            replayed = 0
            ranges = {self._pairs: (checkpoint.pairs_offset + 1, first_offset)}
            async for message in reader.read(ranges):
                if message.value is not None:
                    assessor.on_pair(_pair.decode(message.value))
                    replayed += 1
        log.info(
            "scale-bias window restored: %d pairs, through offset %d, and %d pairs after it",
            len(checkpoint.state.y),
            checkpoint.pairs_offset,
            replayed,
        )
        return max(checkpoint.pairs_offset, first_offset - 1)
