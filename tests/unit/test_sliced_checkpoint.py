"""A save round spread over input batches still restores to exactly the uninterrupted state.

Each plaza of a round is encoded after a different batch, so each holds input up to
offsets of its own; a restore reads back from the round's start, and an event that a
restored plaza already holds reaches the dedup memory only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from detectors.queue import QueueEstimate
from streams.agents import IngestHooks
from streams.checkpoint import Checkpoints, InputMessage
from tests.unit.input_messages import InputRecord
from tests.unit.test_take_over import PARTITION, TX, FakeLog, FakeReader, FakeWriter
from tollmon.checkpoint import CheckpointPolicy, newest_complete
from tollmon.events import Event, encode
from tollmon.ingest import Covered, DeadLetter, Ingest, Source
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.pipeline import Pipeline, PipelineConfig
from tollmon.simulate import Surge, TrafficProfile, generate
from tollmon.validation import validator_for

T0_MS = 1_764_300_000_000
PLAZAS = ["URC-E01", "URC-E02", "URC-W01"]
REPLAY = PipelineConfig(max_hold_s=600.0)  # outputs depend only on the events fed
BATCH = 50
CUT = 2_400  # the previous owner's committed offset when it is killed


class Ticks:
    """A timer on which everything measured takes `step` seconds."""

    def __init__(self, step: float) -> None:
        self._step = step
        self._now = 0.0

    def __call__(self) -> float:
        self._now += self._step
        return self._now


class Worker:
    """The ingest step's part that matters here: dedup, detectors, saves between batches."""

    def __init__(self, network: Network, log: FakeLog, every_events: int) -> None:
        self.ingest = Ingest(
            validator_for(network, 72 * 3_600_000, "replay"),
            Metrics.create(),
            lambda: 0.0,
            time_mode="replay",
        )
        self.pipeline = Pipeline(network, REPLAY)
        self.now_s = 1_000.0  # a second per batch
        self.writer = FakeWriter()
        self.checkpoints = Checkpoints(
            "changelog",
            self.ingest,
            self.pipeline,
            [TX],
            FakeReader(log),  # type: ignore[arg-type]  # reads like a LogReader
            self.writer,  # type: ignore[arg-type]  # writes like a ChangelogWriter
            lambda: self.now_s,
            # Each batch earns the time of one plaza's encoding: a round spans several.
            CheckpointPolicy(1e9, every_events, max_share=0.001, max_slice_s=0.001),
            timer=Ticks(0.001),
        )
        self.estimates: list[tuple[int, QueueEstimate]] = []
        self.detected: list[int] = []

    def take(self, message: InputMessage, covered: Mapping[str, int]) -> str | None:
        source = Source(message.topic, message.partition, message.offset, message.key)
        outcome = self.ingest.accept_restored(message.value, source, covered)
        if isinstance(outcome, DeadLetter):
            return None
        if isinstance(outcome, Covered):
            return outcome.plaza_id
        self.detected.append(message.offset)
        out = self.pipeline.process(outcome, now_s=0.0)
        self.estimates += [(message.offset, e) for e in out.estimates]
        return outcome.plaza_id

    async def batch(self, messages: list[InputRecord]) -> None:
        store = self.checkpoints
        self.now_s += 1.0

        async def handle(message: InputMessage, covered: Mapping[str, int]) -> str | None:
            return self.take(message, covered)

        for message in messages:
            if store.settled(message):
                store.taken(message, self.take(message, {}))
            elif await store.admit(message, handle):
                store.taken(message, self.take(message, store.covered_plazas(message)))
        store.flushed()
        store.save_due()
        await asyncio.sleep(0)  # the record's write


def records(values: list[bytes], start: int, end: int) -> list[InputRecord]:
    return [
        InputRecord(TX, PARTITION, offset, None, values[offset]) for offset in range(start, end)
    ]


@pytest.fixture(scope="module")
def events(network: Network) -> list[Event]:
    """Three plazas of one partition, one of them congested, in event-time order."""
    profile = TrafficProfile(
        vehicles_per_hour=1_500, surges=(Surge(PLAZAS[1], factor=3.0, start_s=300, end_s=900),)
    )
    return sorted(
        generate(network, T0_MS, 1_200, profile, seed=11, plazas=PLAZAS), key=lambda e: e.ts
    )


def test_a_round_spread_over_batches_restores_the_uninterrupted_state(
    network: Network, events: list[Event]
) -> None:
    values = [encode(event) for event in events]
    log = FakeLog([], {TX: 0}, {TX: len(values)}, values=values)

    uninterrupted = Worker(network, log, every_events=10**9)
    killed = Worker(network, log, every_events=1_000)

    async def run() -> None:
        for start in range(0, len(values), BATCH):
            await uninterrupted.batch(records(values, start, min(start + BATCH, len(values))))
        for start in range(0, CUT, BATCH):
            await killed.batch(records(values, start, start + BATCH))

    asyncio.run(run())
    saved = newest_complete(killed.writer.values)
    assert saved is not None
    plaza_offsets = {plaza.offsets[TX] for plaza in saved.plazas}
    # The round took a batch per plaza: each holds input up to offsets of its own.
    assert len(plaza_offsets) == len(PLAZAS)
    assert saved.offsets[TX] < min(plaza_offsets) < max(plaza_offsets) < CUT

    log.changelog = killed.writer.values
    log.committed = {TX: CUT}
    successor = Worker(network, log, every_events=10**9)
    asyncio.run(_rest(successor, values))

    # Every event went through the detectors of its plaza exactly once...
    held = {plaza.plaza_id: plaza.offsets[TX] for plaza in saved.plazas}
    redetected = [o for o in successor.detected if o <= held[events[o].plaza_id]]
    assert redetected == []
    # ...so what the detectors say after the take-over is what they would have said.
    after_cut = [(o, e) for o, e in uninterrupted.estimates if o >= CUT]
    assert [(o, e) for o, e in successor.estimates if o >= CUT] == after_cut
    assert len(after_cut) > 100


async def _rest(worker: Worker, values: list[bytes]) -> None:
    for start in range(CUT, len(values), BATCH):
        await worker.batch(records(values, start, min(start + BATCH, len(values))))


def test_a_round_due_at_the_last_batch_is_finished_while_no_input_comes(
    network: Network, events: list[Event]
) -> None:
    values = [encode(event) for event in events]
    log = FakeLog([], {TX: 0}, {TX: len(values)}, values=values)
    worker = Worker(network, log, every_events=1_000)
    hooks = IngestHooks(None, worker.checkpoints)  # type: ignore[arg-type]  # idle() needs no worker

    async def run() -> None:
        # The save comes due with the last batch, which earns the time of no plaza's encoding.
        for start in range(0, 1_000, BATCH):
            await worker.batch(records(values, start, start + BATCH))
        before = newest_complete(worker.writer.values)  # the take-over's, of no plaza
        assert before is not None
        assert before.plazas == []
        # Then the input falls silent: every fetch comes back empty, a second apart.
        for _ in range(len(PLAZAS) + 1):
            worker.now_s += 1.0
            hooks.idle()
            await asyncio.sleep(0)  # the record's write

    asyncio.run(run())
    saved = newest_complete(worker.writer.values)
    assert saved is not None
    assert sorted(plaza.plaza_id for plaza in saved.plazas) == sorted(PLAZAS)
    assert {plaza.offsets[TX] for plaza in saved.plazas} == {saved.offsets[TX]} == {999}
