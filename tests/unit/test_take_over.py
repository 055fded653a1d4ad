"""A take-over restores a partition's checkpoint and reads back, through one consumer,
what the group committed past it; a later gap is read back the same way."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from streams.checkpoint import (
    CHECKPOINT_HEADROOM_BYTES,
    MAX_CHECKPOINT_BYTES,
    Checkpoints,
    InputMessage,
)
from tests.unit.input_messages import InputRecord
from tests.unit.test_ingest import make_ingest
from tollmon.checkpoint import (
    FORMAT_VERSION,
    CheckpointPolicy,
    PartitionCheckpoint,
    PlazaCheckpoint,
    checkpoint_parts,
    newest_complete,
)
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.pipeline import Pipeline

TX, STATUS = "tx", "status"
PARTITION = 3
ROUND_IDS = itertools.count(1)


@dataclass
class FakeLog:
    """The Kafka side: the changelog partition, the group's commits and the input log."""

    changelog: list[bytes]  # its records' values, oldest first
    committed: dict[str, int]
    inputs: dict[str, int]  # records 0..n-1 per input topic, all of PARTITION
    consumers: list[str] = field(default_factory=list)  # how each consumer was opened
    values: list[bytes] = field(default_factory=list)  # the records' values, if any


class FakeReader:
    """Stands in for `LogReader`: each `open` is one consumer, with or without the group."""

    def __init__(self, log: FakeLog) -> None:
        self._log = log

    @asynccontextmanager
    async def open(self, *, committed: bool = False) -> AsyncIterator[OpenFake]:
        self._log.consumers.append("with the group" if committed else "without a group")
        yield OpenFake(self._log, committed)


class OpenFake:
    """Stands in for `OpenReader`: the reads of one consumer."""

    def __init__(self, log: FakeLog, with_group: bool) -> None:
        self._log = log
        self._with_group = with_group

    async def committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        assert self._with_group, "committed offsets need the group id"
        return {tp: self._log.committed[tp.topic] for tp in tps}

    async def tail(self, tp: TopicPartition, records: int) -> list[bytes]:
        assert tp == TopicPartition("changelog", PARTITION)
        return self._log.changelog[-records:]

    async def read(
        self, ranges: dict[TopicPartition, tuple[int, int]]
    ) -> AsyncIterator[InputMessage]:
        for tp, (start, end) in ranges.items():
            for offset in range(start, min(end, self._log.inputs[tp.topic])):
                value = self._log.values[offset] if self._log.values else None
                yield InputRecord(tp.topic, tp.partition, offset, None, value)


class FakeWriter:
    """Stands in for the changelog writer: keeps what is saved."""

    def __init__(self) -> None:
        self.saved: list[int] = []
        self.values: list[bytes] = []

    async def write(
        self, topic: str, partition: int, records: list[tuple[bytes, bytes]], _: Callable[[], bool]
    ) -> bool:
        self.saved.append(partition)
        self.values.extend(value for _, value in records)
        return True


def checkpoints(
    network: Network, log: FakeLog, max_bytes: int = MAX_CHECKPOINT_BYTES
) -> tuple[Checkpoints, FakeWriter]:
    writer = FakeWriter()
    return Checkpoints(
        "changelog",
        make_ingest(Metrics.create()),
        Pipeline(network),
        [TX, STATUS],
        FakeReader(log),  # type: ignore[arg-type]  # reads like a LogReader
        writer,  # type: ignore[arg-type]  # writes like a ChangelogWriter
        lambda: 1_000.0,
        CheckpointPolicy(every_s=30.0, every_events=10_000),
        max_bytes,
    ), writer


def saved_at(
    offsets: dict[str, int],
    dedup_ids: Sequence[str] = (),
    plazas: Sequence[PlazaCheckpoint] = (),
    part_bytes: int = MAX_CHECKPOINT_BYTES,
) -> list[bytes]:
    """The changelog records of one checkpoint."""
    checkpoint = PartitionCheckpoint(
        version=FORMAT_VERSION, offsets=offsets, plazas=list(plazas), dedup_ids=list(dedup_ids)
    )
    return checkpoint_parts(checkpoint, round_id=next(ROUND_IDS), part_bytes=part_bytes)


def plaza_saved_at(network: Network, offsets: dict[str, int]) -> PlazaCheckpoint:
    """The first plaza of `network`, with empty detectors, saved after `offsets`."""
    plaza_id = network.plazas[0].id
    return PlazaCheckpoint(plaza_id, offsets, Pipeline(network).snapshot([plaza_id]))


def admit_all(store: Checkpoints, messages: list[InputRecord]) -> list[tuple[str, int]]:
    """Admit each message as the ingest step does; what the detectors took in, in order."""
    handled: list[tuple[str, int]] = []

    async def handle(message: InputMessage, covered: Mapping[str, int]) -> str | None:
        handled.append((message.topic, message.offset))
        return None

    async def run() -> None:
        for message in messages:
            if await store.admit(message, handle):
                store.taken(message, await handle(message, store.covered_plazas(message)))

    asyncio.run(run())
    return handled


def test_a_take_over_reads_checkpoint_commits_and_read_back_through_one_consumer(
    network: Network,
) -> None:
    # Saved after tx 4 and status 1; the previous owner then committed tx 8 and status 2.
    log = FakeLog(saved_at({TX: 4, STATUS: 1}), {TX: 8, STATUS: 2}, {TX: 9, STATUS: 3})
    store, writer = checkpoints(network, log)

    handled = admit_all(store, [InputRecord(TX, PARTITION, 8)])

    assert handled == [(TX, 5), (TX, 6), (TX, 7), (TX, 8)]
    assert log.consumers == ["with the group"]
    assert writer.saved == [PARTITION]  # saved at once after the take-over


def test_a_take_over_without_a_checkpoint_starts_at_the_commits_and_reads_nothing_back(
    network: Network,
) -> None:
    log = FakeLog([], {TX: 8, STATUS: 2}, {TX: 9, STATUS: 3})
    store, _ = checkpoints(network, log)

    handled = admit_all(store, [InputRecord(TX, PARTITION, 8), InputRecord(STATUS, PARTITION, 2)])

    assert handled == [(TX, 8), (STATUS, 2)]
    assert log.consumers == ["with the group"]


def test_offsets_never_delivered_are_read_back_by_a_consumer_outside_the_group(
    network: Network,
) -> None:
    log = FakeLog([], {TX: 8, STATUS: 2}, {TX: 20, STATUS: 3})
    store, _ = checkpoints(network, log)

    handled = admit_all(store, [InputRecord(TX, PARTITION, 8), InputRecord(TX, PARTITION, 11)])

    assert handled == [(TX, 8), (TX, 9), (TX, 10), (TX, 11)]
    assert log.consumers == ["with the group", "without a group"]


def test_a_checkpoint_over_the_message_limit_goes_in_parts_and_comes_back_whole(
    network: Network,
) -> None:
    remembered = [f"tx-{n:05d}" for n in range(5_000)]  # 9 bytes each, 45 kB in all
    limit = CHECKPOINT_HEADROOM_BYTES + 10_000
    log = FakeLog(
        saved_at({TX: 8, STATUS: 2}, remembered, part_bytes=10_000),
        {TX: 9, STATUS: 3},
        {TX: 10, STATUS: 3},
    )
    store, writer = checkpoints(network, log, max_bytes=limit)

    admit_all(store, [InputRecord(TX, PARTITION, 9)])

    assert len(writer.values) >= 5
    assert all(len(part) <= limit - CHECKPOINT_HEADROOM_BYTES + 64 for part in writer.values)
    resaved = newest_complete(writer.values)
    assert resaved is not None
    assert resaved.dedup_ids == remembered


def test_a_save_cut_short_leaves_the_one_before_it_to_restore(network: Network) -> None:
    complete = saved_at({TX: 4, STATUS: 1}, part_bytes=16)
    cut_short = saved_at({TX: 7, STATUS: 2}, part_bytes=16)
    assert len(cut_short) > 1
    log = FakeLog([*complete, *cut_short[:-1]], {TX: 8, STATUS: 2}, {TX: 9, STATUS: 3})
    store, _ = checkpoints(network, log)

    handled = admit_all(store, [InputRecord(TX, PARTITION, 8)])

    assert handled == [(TX, 5), (TX, 6), (TX, 7), (TX, 8)]


def test_events_a_restored_plaza_already_holds_reach_it_as_covered_until_passed(
    network: Network,
) -> None:
    # The round began after tx 4; its plaza was encoded a batch later, after tx 6.
    plaza = plaza_saved_at(network, {TX: 6, STATUS: 1})
    log = FakeLog(saved_at({TX: 4, STATUS: 1}, plazas=[plaza]), {TX: 8, STATUS: 2}, {TX: 12})
    store, _ = checkpoints(network, log)
    covered: list[tuple[int, int | None]] = []

    async def handle(message: InputMessage, held: Mapping[str, int]) -> str | None:
        covered.append((message.offset, held.get(plaza.plaza_id)))
        return plaza.plaza_id

    async def run() -> None:
        for offset in (8, 9):
            message = InputRecord(TX, PARTITION, offset)
            if store.settled(message):
                store.taken(message, await handle(message, {}))
            elif await store.admit(message, handle):
                store.taken(message, await handle(message, store.covered_plazas(message)))

    asyncio.run(run())

    assert covered == [(5, 6), (6, 6), (7, None), (8, None), (9, None)]
    assert store.settled(InputRecord(TX, PARTITION, 10))
