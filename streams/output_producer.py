"""The producer of the worker's outputs: librdkafka, on threads of its own.

Estimates, alerts and re-keyed weighings are a few thousand messages a second at a few
thousand plazas. Through Faust's producer (aiokafka, pure Python) every one of them
cost a future, a pending-message record and its share of the sender's request building
and response parsing, all on the event loop's thread: about a fifth of a live worker's
CPU at 2,000 standard plazas (docs/profiling.md, twelfth round). librdkafka batches,
sends and retries on its own threads; handing it a message is one C call.

Delivery is still checked: once librdkafka gives up on a message (after
`message.timeout.ms` of retries), every `flush` raises. Nothing is committed and no
checkpoint is saved after that, so a restarted worker reads the input again from
before the lost output and publishes it again (at least once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from mode import Service

from streams.emitter import Headers

log = logging.getLogger(__name__)

LINGER_MS = 2  # a batch waits this long for more messages before it is sent
POLL_S = 0.002  # how often a flush looks whether the broker has taken everything
STOP_FLUSH_S = 10.0  # what a stopping worker waits for its last outputs


class DeliveryError(Exception):
    """An output never reached the broker: the input it came from must not be committed."""


class OutputProducer(Service):
    """Hands messages to librdkafka by topic name; `flush` waits until all are stored.

    Keyed messages go to the partition the Java client and aiokafka would choose
    (murmur2), so a key's messages share a partition whichever client wrote them.
    """

    def __init__(self, bootstrap: str, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": "tollmon-outputs",
            "partitioner": "murmur2_random",
            "enable.idempotence": True,  # retries neither reorder nor duplicate
            "linger.ms": LINGER_MS,
            "delivery.report.only.error": True,
            "on_delivery": self._delivered,
            "error_cb": self._client_error,
            **(config or {}),
        }
        self._producer: Producer | None = None
        self._failed: list[str] = []

    async def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> None:
        """Queue one message; waits only while librdkafka's queue is full."""
        producer = self._client()
        # The stubs' header type is a list of a wider tuple type; a list is invariant.
        extra: Any = headers
        while True:
            try:
                producer.produce(topic, value, key, headers=extra)
                return
            except BufferError:
                producer.poll(0)
                await asyncio.sleep(POLL_S)

    async def flush(self) -> None:
        """Wait until every message handed over so far is stored by the broker.

        Raises `DeliveryError` if any message handed over ever failed: the worker must
        be restarted to publish it again, and no commit may pass it meanwhile.
        """
        producer = self._producer
        if producer is None:
            return
        producer.poll(0)
        while len(producer):
            await asyncio.sleep(POLL_S)
            producer.poll(0)
        if self._failed:
            failed = self._failed
            raise DeliveryError(
                f"{len(failed)} output messages not delivered (first: {failed[0]}); "
                "restart the worker to publish them again"
            )

    async def on_stop(self) -> None:
        producer = self._producer
        if producer is None:
            return
        try:
            await asyncio.wait_for(self.flush(), STOP_FLUSH_S)
        except (TimeoutError, DeliveryError) as exc:
            log.error("outputs not all delivered at stop: %r", exc)

    def _client(self) -> Producer:
        producer = self._producer
        if producer is None:
            producer = self._producer = Producer(self._config)
        return producer

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:  # only failures are reported
            self._failed.append(f"{message.topic()}: {error.str()}")
            log.error("output to %s not delivered: %s", message.topic(), error.str())

    def _client_error(self, error: KafkaError) -> None:
        log.warning("output producer: %s", error.str())
