"""Checkpoints over the message limit, through the real broker: written in parts, read
back whole, and a save cut short passed over for the complete one before it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.changelog import ChangelogWriter
from streams.checkpoint import CHANGELOG_CONFIG, MAX_CHECKPOINT_BYTES, LogReader
from streams.inputs import ensure_topics
from tests.integration.conftest import Stack
from tollmon.checkpoint import (
    FORMAT_VERSION,
    PartitionCheckpoint,
    checkpoint_parts,
    newest_complete,
)

pytestmark = pytest.mark.integration

PARTITION = 1
PART_BYTES = 1024 * 1024


def checkpoint(offset: int, ids: int) -> PartitionCheckpoint:
    # Random ids do not compress: what is written is what the broker stores.
    dedup_ids = [uuid.uuid4().hex for _ in range(ids)]
    return PartitionCheckpoint(
        version=FORMAT_VERSION, offsets={"tx": offset}, plazas=[], dedup_ids=dedup_ids
    )


def records(saved: PartitionCheckpoint, round_id: int) -> list[tuple[bytes, bytes]]:
    parts = checkpoint_parts(saved, round_id, PART_BYTES)
    return [(f"{PARTITION}.{i}".encode(), part) for i, part in enumerate(parts)]


async def write_and_read(bootstrap: str) -> tuple[PartitionCheckpoint, list[bytes], list[bytes]]:
    topic = f"it-checkpoints-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, {}, {topic: (2, CHANGELOG_CONFIG)})

    async def nothing_to_flush() -> None:
        return None

    writer = ChangelogWriter(bootstrap, {}, MAX_CHECKPOINT_BYTES, nothing_to_flush)
    complete = checkpoint(offset=41, ids=100_000)  # about 3.4 MB: 4 parts
    cut_short = records(checkpoint(offset=97, ids=100_000), round_id=2)
    try:
        assert await writer.write(topic, PARTITION, records(complete, round_id=1))
        assert await writer.write(topic, PARTITION, cut_short[:2])  # then the worker died
    finally:
        await writer.on_stop()
    tp = TopicPartition(topic, PARTITION)
    try:
        async with LogReader(bootstrap, "unused", {}).open() as reader:
            last_two = await reader.tail(tp, 2)
            everything = await reader.tail(tp, 100)
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    return complete, last_two, everything


def test_a_checkpoint_in_parts_comes_back_whole_past_a_save_cut_short(stack: Stack) -> None:
    complete, last_two, everything = asyncio.run(write_and_read(stack.bootstrap))

    assert len(everything) == 4 + 2
    assert newest_complete(last_two) is None  # the cut-short save alone
    assert newest_complete(everything) == complete
