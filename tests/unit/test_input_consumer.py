"""The input consumer hands whole fetches on, and at a rebalance commits what went
through (its outputs flushed first) before it lets the partitions go."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError

import streams.inputs
from streams.checkpoint import InputMessage
from streams.inputs import InputConsumer
from tests.unit.input_messages import InputRecord

pytestmark = pytest.mark.timeout(10)  # a broken hand-over shows as a hang

TX0, TX1, STATUS0 = TopicPartition("tx", 0), TopicPartition("tx", 1), TopicPartition("status", 0)
Fetch = dict[TopicPartition, list[InputMessage]]


def records(tp: TopicPartition, *offsets: int) -> list[InputMessage]:
    return [InputRecord(tp.topic, tp.partition, offset) for offset in offsets]


class FakeKafka:
    """Stands in for the aiokafka consumer: fetches are handed in by the test."""

    def __init__(self, log: list[str]) -> None:
        self._log = log
        self._fetches: asyncio.Queue[Fetch] = asyncio.Queue()
        self._handed = False
        self.stopped = False
        self.commit_error: Exception | None = None

    def subscribe(self, topics: Iterable[str], listener: object) -> None:
        self.topics = tuple(topics)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, timeout_ms: int, max_records: int) -> Fetch:
        if self._handed:  # the loop is back for more: the last fetch went through
            self._handed = False
            self._fetches.task_done()
        if self.stopped:
            raise ConsumerStoppedError()
        try:
            fetch = await asyncio.wait_for(self._fetches.get(), timeout_ms / 1000)
        except TimeoutError:
            return {}
        self._handed = True
        return fetch

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self._log.append(f"commit {_offsets(offsets)}")

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def fetch_arrives(self, fetch: Fetch) -> None:
        self._fetches.put_nowait(fetch)

    async def went_through(self, fetch: Fetch) -> None:
        """Hand `fetch` over and wait until the consumer has processed and committed it."""
        self.fetch_arrives(fetch)
        await self._fetches.join()


class FakeHooks:
    """Stands in for the ingest step's side: what is flushed is set by the test."""

    def __init__(self, log: list[str]) -> None:
        self._log = log
        self.flushed: dict[TopicPartition, int] = {}
        self.idles = 0

    def flushed_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.flushed[tp] for tp in partitions if tp in self.flushed}

    def revoked(self, partitions: set[TopicPartition]) -> None:
        self._log.append(f"revoked {_partitions(partitions)}")

    def assigned(self, partitions: set[TopicPartition]) -> None:
        self._log.append(f"assigned {_partitions(partitions)}")

    def lag(self, tp: TopicPartition, records: int) -> None:
        pass

    def idle(self) -> None:
        self.idles += 1


def _partitions(tps: Iterable[TopicPartition]) -> str:
    return " ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps))


def _offsets(offsets: dict[TopicPartition, int]) -> str:
    return " ".join(sorted(f"{tp.topic}[{tp.partition}]={n}" for tp, n in offsets.items()))


class Harness:
    """An input consumer over fakes; every step of interest goes to `log` in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.kafka = FakeKafka(self.log)
        self.hooks = FakeHooks(self.log)
        self.batches: list[list[tuple[str, int, int]]] = []
        self.processing = asyncio.Event()  # a batch has reached the ingest step
        # Set by a test to hold a batch in the ingest step, or the producer's flush.
        self.release: asyncio.Event | None = None
        self.outputs_sent: asyncio.Event | None = None
        self.consumer = InputConsumer(
            lambda: self.kafka,  # type: ignore[arg-type,return-value]  # consumes like aiokafka
            ["tx", "status"],
            self._process,
            self.hooks,
            flush_outputs=self._flush_outputs,
        )

    async def _process(self, messages: list[InputMessage]) -> None:
        self.processing.set()
        if self.release is not None:
            await self.release.wait()
        self.batches.append([(m.topic, m.partition, m.offset) for m in messages])
        self.log.append(f"processed {len(messages)}")
        # As the ingest step does: all it took in is flushed when it returns.
        for m in messages:
            self.hooks.flushed[TopicPartition(m.topic, m.partition)] = m.offset + 1

    async def _flush_outputs(self) -> None:
        if self.outputs_sent is not None:
            await self.outputs_sent.wait()
        self.log.append("outputs flushed")


@pytest.fixture(autouse=True)
def no_timed_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the rebalances commit, however slowly a test runs (the one on commits sets its own)."""
    monkeypatch.setattr(streams.inputs, "COMMIT_EVERY_S", 3600.0)


@asynccontextmanager
async def running(assigned: set[TopicPartition]) -> AsyncIterator[Harness]:
    harness = Harness()
    await harness.consumer.start()
    await harness.consumer.on_partitions_assigned(assigned)
    harness.log.clear()
    try:
        yield harness
    finally:
        await harness.consumer.stop()


async def yield_to_others() -> None:
    """Let every runnable task run until it blocks (nothing here waits on I/O)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_each_fetch_goes_to_the_ingest_step_whole() -> None:
    async with running({TX0, TX1, STATUS0}) as harness:
        fetch = {TX0: records(TX0, 0, 1, 2), TX1: records(TX1, 0), STATUS0: records(STATUS0, 5)}
        await harness.kafka.went_through(fetch)
        await harness.kafka.went_through({TX1: records(TX1, 1, 2)})

    assert harness.kafka.topics == ("tx", "status")
    assert harness.batches == [
        [("tx", 0, 0), ("tx", 0, 1), ("tx", 0, 2), ("tx", 1, 0), ("status", 0, 5)],
        [("tx", 1, 1), ("tx", 1, 2)],
    ]


async def test_records_of_partitions_not_held_are_not_processed() -> None:
    async with running({TX0}) as harness:
        await harness.kafka.went_through({TX0: records(TX0, 0), TX1: records(TX1, 0, 1)})

    assert harness.batches == [[("tx", 0, 0)]]


async def test_records_fetched_for_a_partition_revoked_during_the_fetch_are_dropped() -> None:
    async with running({TX0, TX1}) as harness:
        # The fetch is under way (the loop waits in getmany) when the rebalance comes.
        await yield_to_others()
        await harness.consumer.on_partitions_revoked({TX1})
        await harness.kafka.went_through({TX0: records(TX0, 7), TX1: records(TX1, 3, 4)})
        await harness.kafka.went_through({TX1: records(TX1, 5)})

    assert harness.batches == [[("tx", 0, 7)]]
    assert "revoked tx[1]" in harness.log


async def test_a_revocation_commits_the_flushed_offsets_after_the_outputs_then_lets_go() -> None:
    async with running({TX0, TX1}) as harness:
        await harness.kafka.went_through({TX0: records(TX0, 0, 1, 2)})
        # Flushed as far as the ingest step says, whatever was fetched.
        harness.hooks.flushed[TX0] = 2
        harness.hooks.flushed[STATUS0] = 9  # not held: not this consumer's to commit
        harness.outputs_sent = asyncio.Event()
        revocation = asyncio.create_task(harness.consumer.on_partitions_revoked({TX0, TX1}))
        await yield_to_others()
        assert harness.log == ["processed 3"]  # nothing is committed before the outputs are sent
        harness.outputs_sent.set()
        await revocation

    assert harness.log == [
        "processed 3",
        "outputs flushed",
        "commit tx[0]=2",
        "revoked tx[0] tx[1]",
    ]


async def test_a_revocation_waits_for_the_batch_being_processed() -> None:
    async with running({TX0}) as harness:
        harness.release = asyncio.Event()
        harness.kafka.fetch_arrives({TX0: records(TX0, 0, 1)})
        await harness.processing.wait()
        revocation = asyncio.create_task(harness.consumer.on_partitions_revoked({TX0}))
        await yield_to_others()
        assert not revocation.done()
        assert harness.log == []  # neither committed nor let go mid-batch
        harness.release.set()
        await revocation

    assert harness.log == ["processed 2", "outputs flushed", "commit tx[0]=2", "revoked tx[0]"]


async def test_commits_never_repeat_or_go_back_on_an_offset_already_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streams.inputs, "COMMIT_EVERY_S", 0.0)  # commit after every fetch
    async with running({TX0, TX1}) as harness:
        await harness.kafka.went_through({TX0: records(TX0, 0, 1, 2)})
        await harness.kafka.went_through({TX1: records(TX1, 0, 1)})
        await harness.kafka.went_through({})
        harness.hooks.flushed[TX0] = 1  # behind what was committed
        await harness.kafka.went_through({})
        await harness.kafka.went_through({TX0: records(TX0, 3)})

    assert [entry for entry in harness.log if entry.startswith("commit")] == [
        "commit tx[0]=3",
        "commit tx[1]=2",
        "commit tx[0]=4",
    ]


async def test_a_commit_refused_during_a_rebalance_is_logged_and_the_partitions_still_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running({TX0, TX1}) as harness:
        await harness.kafka.went_through({TX0: records(TX0, 0)})
        harness.kafka.commit_error = CommitFailedError("the group rebalanced")
        with caplog.at_level(logging.WARNING, logger="streams.inputs"):
            await harness.consumer.on_partitions_revoked({TX0, TX1})
        harness.kafka.commit_error = None
        await harness.kafka.went_through({TX0: records(TX0, 1)})

    assert harness.log == ["processed 1", "outputs flushed", "revoked tx[0] tx[1]"]
    assert harness.batches == [[("tx", 0, 0)]]  # no longer held: the new owner reads it
    assert "input offsets not committed before a rebalance" in caplog.text


async def test_a_fetch_that_brings_nothing_to_take_in_lets_the_ingest_step_do_its_idle_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streams.inputs, "FETCH_WAIT_MS", 60_000)  # no fetch times out here
    async with running({TX0}) as harness:
        await harness.kafka.went_through({TX0: records(TX0, 0, 1)})
        assert harness.hooks.idles == 0
        await harness.kafka.went_through({})
        await harness.kafka.went_through({TX1: records(TX1, 0)})  # a partition not held
        idles = harness.hooks.idles

    assert harness.batches == [[("tx", 0, 0), ("tx", 0, 1)]]
    assert idles == 2
