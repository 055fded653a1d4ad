"""The outputs' producer, against the real broker: what a flush promises is stored, in
order, where the Java client would put it; what never arrives stops the commit."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2

from streams.output_producer import DeliveryError, OutputProducer
from tests.integration.conftest import Stack, create_topics

pytestmark = pytest.mark.integration

PARTITIONS = 4


def stored(
    bootstrap: str, topic: str
) -> list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
    )
    try:
        return [(m.partition, m.key, m.value, list(m.headers)) for m in consumer]
    finally:
        consumer.close()


def test_a_flush_returns_once_every_message_is_stored_in_order_with_its_headers(
    stack: Stack,
) -> None:
    topic = f"test.outputs.{uuid.uuid4().hex[:8]}"
    create_topics(stack.bootstrap, [topic], PARTITIONS)
    producer = OutputProducer(stack.bootstrap)
    keys = [f"P{i % 7:03d}/entry".encode() for i in range(500)]

    async def send_all() -> None:
        for i, key in enumerate(keys):
            await producer(topic, key, f"{i}".encode(), [("tollmon-source", b"2")])
        await producer.flush()

    asyncio.run(send_all())
    messages = stored(stack.bootstrap, topic)

    assert len(messages) == len(keys)
    for partition, key, _, headers in messages:
        assert key is not None
        # The Java client's (and aiokafka's) partition for the key.
        assert partition == (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        assert headers == [("tollmon-source", b"2")]
    for key in set(keys):
        values = [int(value) for _, k, value, _ in messages if k == key]
        assert values == sorted(values), "one key's messages out of order"


def test_a_message_that_cannot_be_delivered_makes_every_later_flush_raise() -> None:
    # Nothing listens on port 1: librdkafka retries until the message times out.
    producer = OutputProducer("127.0.0.1:1", {"message.timeout.ms": 500})

    async def send_and_flush() -> None:
        await producer("tollmon.nowhere", b"k", b"v", None)
        await producer.flush()

    with pytest.raises(DeliveryError, match="1 output messages not delivered"):
        asyncio.run(send_and_flush())
    # And every flush after it: no commit or checkpoint may ever pass the lost output.
    with pytest.raises(DeliveryError):
        asyncio.run(producer.flush())


def test_flushing_before_anything_was_sent_returns_at_once() -> None:
    asyncio.run(OutputProducer("127.0.0.1:1").flush())
