"""Saving the scale-bias window (streams/bias_checkpoints.py) when due, even when the pairs
stop, and restoring it only when it moved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaConnectionError

from streams.bias_checkpoints import SAVE_EVERY_MS, SAVE_MIN_INTERVAL_S, BiasCheckpoints
from streams.changelog import ChangelogWriter
from streams.checkpoint import LogReader
from tollmon.checkpoint import newest_complete_as
from tollmon.network import Network
from tollmon.weighing_flow import PairAssessor, decode_bias_checkpoint

T0_MS = 1_700_000_000_000


class CountingReader:
    """Stands in for the reader of the checkpoint log: counts how often it is opened, and
    opens on nothing (no checkpoint saved)."""

    def __init__(self) -> None:
        self.opened = 0

    def open(self) -> AbstractAsyncContextManager[Any]:
        self.opened += 1
        raise OSError("no broker in a unit test")


class KeptLog:
    """Stands in for the producer of the checkpoint log: keeps what is written, or fails
    while `down`."""

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.down = False

    async def write(
        self,
        topic: str,
        partition: int,
        records: Sequence[tuple[bytes, bytes]],
        still_wanted: Callable[[], bool] = lambda: True,
    ) -> bool:
        if self.down:
            raise KafkaConnectionError("broker down")
        if not still_wanted():
            return False
        self.records.extend(value for _, value in records)
        return True

    def saved_offset(self) -> int | None:
        checkpoint = newest_complete_as(self.records, decode_bias_checkpoint)
        return None if checkpoint is None else checkpoint.pairs_offset


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def saving(log: KeptLog, clock: Clock) -> BiasCheckpoints:
    return BiasCheckpoints(
        "bias-changelog",
        "toll.weigh.pairs",
        cast(ChangelogWriter, log),
        cast(LogReader, CountingReader()),
        clock=clock,
    )


async def replay_fast(book: BiasCheckpoints, assessor: PairAssessor, pairs: int) -> None:
    """`pairs` pairs a minute apart in event time, all within the same wall-clock second."""
    await book.restore_once(assessor, 0)
    for offset in range(pairs):
        await book.after(assessor, offset, event_ms=T0_MS + offset * 60_000)


def checkpoints(reader: CountingReader) -> BiasCheckpoints:
    return BiasCheckpoints(
        "bias-changelog",
        "toll.weigh.pairs",
        cast(ChangelogWriter, None),  # nothing is saved: every pair has the same event time
        cast(LogReader, reader),
        clock=lambda: 0.0,
    )


@pytest.mark.asyncio
async def test_the_pairs_coming_back_where_this_worker_left_them_need_no_restore(
    network: Network,
) -> None:
    reader = CountingReader()
    book = checkpoints(reader)
    assessor = PairAssessor(network)
    assert await book.restore_once(assessor, 0) is None  # a first start: tries the log
    for offset in range(10):
        await book.after(assessor, offset, event_ms=1_700_000_000_000)

    book.start_over()  # a rebalance gives the pairs back, resuming at 10
    assert await book.restore_once(assessor, 10) is None

    assert reader.opened == 1
    assert not book.covers(10)


@pytest.mark.asyncio
async def test_pairs_another_worker_took_in_meanwhile_are_restored(network: Network) -> None:
    reader = CountingReader()
    book = checkpoints(reader)
    assessor = PairAssessor(network)
    await book.restore_once(assessor, 0)
    for offset in range(10):
        await book.after(assessor, offset, event_ms=1_700_000_000_000)

    book.start_over()  # the pairs come back at 25: another owner assessed 10-24
    await book.restore_once(assessor, 25)

    assert reader.opened == 2


@pytest.mark.asyncio
async def test_a_replay_too_fast_to_save_is_saved_once_the_wall_time_limit_passes(
    network: Network,
) -> None:
    log, clock = KeptLog(), Clock()
    book, assessor = saving(log, clock), PairAssessor(network)
    await replay_fast(book, assessor, pairs=3 * SAVE_EVERY_MS // 60_000)
    assert log.saved_offset() is None  # due in event time, held back in wall time

    clock.now_s += SAVE_MIN_INTERVAL_S / 2
    assert not await book.save_held(assessor)
    clock.now_s += SAVE_MIN_INTERVAL_S / 2
    assert await book.save_held(assessor)  # no pair came since: the timer saves
    assert log.saved_offset() == 3 * SAVE_EVERY_MS // 60_000 - 1

    clock.now_s += SAVE_MIN_INTERVAL_S
    assert not await book.save_held(assessor)  # nothing new to save


@pytest.mark.asyncio
async def test_pairs_no_longer_owned_are_not_saved(network: Network) -> None:
    log, clock = KeptLog(), Clock()
    book, assessor = saving(log, clock), PairAssessor(network)
    await replay_fast(book, assessor, pairs=2 * SAVE_EVERY_MS // 60_000)

    book.start_over()  # revoked: the next owner saves its own window
    clock.now_s += SAVE_MIN_INTERVAL_S
    assert not await book.save_held(assessor)
    assert log.records == []


@pytest.mark.asyncio
async def test_a_save_the_broker_refused_is_tried_again(network: Network) -> None:
    log, clock = KeptLog(), Clock()
    book, assessor = saving(log, clock), PairAssessor(network)
    await replay_fast(book, assessor, pairs=2 * SAVE_EVERY_MS // 60_000)

    log.down = True
    clock.now_s += SAVE_MIN_INTERVAL_S
    assert not await book.save_held(assessor)
    log.down = False
    clock.now_s += SAVE_MIN_INTERVAL_S
    assert await book.save_held(assessor)
    assert log.saved_offset() == 2 * SAVE_EVERY_MS // 60_000 - 1
