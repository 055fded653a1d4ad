"""The long-lived heap, frozen out of the collector's scans, and given back."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import cast

import pytest
from aiokafka import TopicPartition

from streams.agents import IngestHooks, Worker
from streams.checkpoint import Checkpoints
from streams.heap import HeapFreezer, freeze, freeze_after_full_collections, thaw


class Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    thaw()
    yield
    thaw()


def scanned(obj: object) -> bool:
    """Whether the collector's generations (not the frozen heap) hold `obj`."""
    return any(o is obj for o in gc.get_objects())


def test_a_freeze_takes_surviving_objects_out_of_the_collectors_scans() -> None:
    state = Node()
    freeze()
    assert gc.get_freeze_count() > 0
    assert not scanned(state)


def test_garbage_is_collected_before_the_freeze_not_frozen_with_it() -> None:
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    freeze()
    assert gone() is None


def test_a_thaw_gives_every_frozen_object_back_to_the_collector() -> None:
    state = Node()
    freeze()
    thaw()
    assert gc.get_freeze_count() == 0
    assert scanned(state)
    dropped = weakref.ref(state)
    del state
    gc.collect()
    assert dropped() is None


def test_objects_made_after_a_freeze_are_still_scanned() -> None:
    freeze()
    assert scanned(Node())


def run_with_freezer(body: Callable[[], None]) -> None:
    """Run `body` while a started HeapFreezer service is in place."""

    async def scenario() -> None:
        freezer = HeapFreezer()
        await freezer.start()
        try:
            body()
        finally:
            await freezer.stop()

    asyncio.run(scenario())


def test_a_running_freezer_freezes_what_a_full_collection_leaves() -> None:
    made: list[Node] = []

    def body() -> None:
        made.append(Node())
        assert scanned(made[0])
        gc.collect(2)
        assert not scanned(made[0])

    run_with_freezer(body)


def test_young_collections_do_not_freeze() -> None:
    made: list[Node] = []

    def body() -> None:
        made.append(Node())
        gc.collect(0)
        gc.collect(1)
        assert scanned(made[0])

    run_with_freezer(body)


def test_a_stopped_freezer_leaves_full_collections_alone() -> None:
    run_with_freezer(lambda: None)
    assert freeze_after_full_collections not in gc.callbacks
    state = Node()
    gc.collect(2)
    assert scanned(state)


def test_partitions_leaving_the_worker_thaw_the_heap() -> None:
    """Their detector state is dropped; a cycle in it must not stay frozen for good."""
    forgotten: list[int] = []
    checkpoints = SimpleNamespace(on_revoked=forgotten.extend)
    recorder = SimpleNamespace(forget_consumer_lag=lambda topic, partition: None)
    hooks = IngestHooks(
        cast(Worker, SimpleNamespace(recorder=recorder)), cast(Checkpoints, checkpoints)
    )
    freeze()
    hooks.revoked({TopicPartition("toll.lane.transactions", 2)})
    assert forgotten == [2]
    assert gc.get_freeze_count() == 0
