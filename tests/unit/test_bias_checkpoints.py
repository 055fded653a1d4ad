"""Restoring the scale-bias window (streams/bias_checkpoints.py) only when it moved."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import pytest

from streams.bias_checkpoints import BiasCheckpoints
from streams.changelog import ChangelogWriter
from streams.checkpoint import LogReader
from tollmon.network import Network
from tollmon.weighing_flow import PairAssessor


class CountingReader:
    """Stands in for the reader of the checkpoint log: counts how often it is opened, and
    opens on nothing (no checkpoint saved)."""

    def __init__(self) -> None:
        self.opened = 0

    def open(self) -> AbstractAsyncContextManager[Any]:
        self.opened += 1
        raise OSError("no broker in a unit test")


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
