"""The ingest step's batch step: outputs staged per batch, handed on in order, none lost."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import msgspec
import pytest

from streams.agents import Worker, ingest_batch
from streams.emitter import Emitter
from tests.unit.input_messages import InputRecord
from tollmon.alerting import AlertBook
from tollmon.events import Event, WeighMeasurement, encode
from tollmon.ingest import Ingest
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.pipeline import Outputs, Pipeline
from tollmon.publish import topic_for
from tollmon.recorder import MetricsRecorder
from tollmon.simulate import Surge, TrafficProfile, generate
from tollmon.validation import validator_for

START_MS = 1_714_521_600_000
PLAZA = "URC-E01"

Sent = tuple[str, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]


@dataclass
class NamedTopic:
    """Stands in for a Faust topic handle: only its name is used."""

    name: str

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class RecordingTopics:
    """The topic handles, and a producer that records what is sent to them."""

    log: list[Sent] = field(default_factory=list)

    def __getattr__(self, name: str) -> NamedTopic:
        return NamedTopic(name)

    async def publish(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> None:
        await asyncio.sleep(0)  # a real producer hand-off may suspend
        self.log.append((topic, key, value, tuple(headers or ())))


def make_worker(network: Network) -> tuple[Worker, list[Sent]]:
    topics = RecordingTopics()
    metrics = Metrics.create()
    recorder = MetricsRecorder(metrics)

    def clock() -> float:
        return 1_000.0  # replay mode: processing time decides nothing here

    worker = Worker(
        topics=topics,  # type: ignore[arg-type]  # records sends like a Faust topic
        ingest=Ingest(
            validator_for(network, 72 * 3_600_000, "replay"), metrics, clock, time_mode="replay"
        ),
        pipeline=Pipeline(network),
        recorder=recorder,
        emitter=Emitter(topics, recorder, AlertBook(), topics.publish),
        pusher=None,
        clock=clock,
    )
    return worker, topics.log


def messages_of(events: list[Event]) -> list[InputRecord]:
    out = [
        InputRecord(topic_for(e), 0, n, e.plaza_id.encode(), encode(e))
        for n, e in enumerate(events)
    ]
    # A malformed message in the middle, which must be dead-lettered, not lost.
    out.insert(len(out) // 2, InputRecord("toll.lane.transactions", 0, 10**6, b"x", b"{not json"))
    return out


@pytest.fixture(scope="module")
def traffic(network: Network) -> list[InputRecord]:
    """Ten minutes at one plaza with an entry surge (estimates and alerts) and weighings."""
    profile = TrafficProfile(vehicles_per_hour=900, surges=(Surge(PLAZA, 6.0, 60, 480, "entry"),))
    return messages_of(list(generate(network, START_MS, 600, profile, seed=3, plazas=[PLAZA])))


def run(network: Network, messages: list[InputRecord], batch: int) -> list[Sent]:
    worker, log = make_worker(network)

    async def drain() -> None:
        for start in range(0, len(messages), batch):
            chunk = messages[start : start + batch]
            await ingest_batch(worker, chunk)
            # At-least-once: the batch is acknowledged after this returns, so every
            # output of the batch must already be with the producer.
            assert len(worker.emitter) == 0

    asyncio.run(drain())
    return log


def per_topic(sent: list[Sent]) -> dict[str, list[Sent]]:
    """Kafka orders messages per topic partition only; per topic is what must agree."""
    out: dict[str, list[Sent]] = {}
    for message in sent:
        out.setdefault(message[0], []).append(message)
    return out


@pytest.mark.parametrize("batch", [7, 500], ids=["small-batches", "large-batches"])
def test_batches_send_what_one_event_at_a_time_sends_in_the_same_order_per_topic(
    network: Network, traffic: list[InputRecord], batch: int
) -> None:
    one_by_one = per_topic(run(network, traffic, 1))
    assert set(one_by_one) == {"estimates", "alerts", "by_pass", "deadletter"}
    assert per_topic(run(network, traffic, batch)) == one_by_one


def test_a_batch_re_keys_weighings_and_dead_letters_bad_input_with_the_original_bytes(
    network: Network, traffic: list[InputRecord]
) -> None:
    sent = run(network, traffic, 100)
    weighings = [m for m in traffic if m.topic == "toll.weigh.measurements"]
    by_pass = [(key, value) for name, key, value, _ in sent if name == "by_pass"]
    assert by_pass == [(pass_id_of(m), m.value) for m in weighings]
    [(_, key, value, headers)] = [s for s in sent if s[0] == "deadletter"]
    assert (key, value) == (b"x", b"{not json")
    assert dict(headers)["tollmon.reason"] == b"not_json"


def pass_id_of(message: InputRecord) -> bytes:
    assert message.value is not None
    return msgspec.json.decode(message.value, type=WeighMeasurement).pass_id.encode()


def test_concurrent_flushes_send_in_the_order_outputs_were_staged(network: Network) -> None:
    topics = RecordingTopics()
    emitter = Emitter(topics, MetricsRecorder(Metrics.create()), AlertBook(), topics.publish)

    async def scenario() -> None:
        emitter.stage_message(topics.deadletter, b"1", b"first")
        emitter.stage_message(topics.deadletter, b"2", b"second")
        agent = asyncio.create_task(emitter.flush())
        await asyncio.sleep(0)  # the ingest step's flush is under way, suspended in a send
        emitter.stage_message(topics.deadletter, b"3", b"third")  # e.g. the tick timer
        await asyncio.gather(agent, emitter.emit(Outputs()))

    asyncio.run(scenario())
    assert [key for _, key, _, _ in topics.log] == [b"1", b"2", b"3"]
    assert len(emitter) == 0
