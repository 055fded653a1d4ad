"""Checkpoints reach their changelog through a Kafka producer of their own.

A partition's checkpoint is one or more messages of some hundreds of kilobytes to
megabytes (about 25 kB per plaza, compressed). Sent through Faust's producer, it shared that
producer's connection with every estimate and alert, and aiokafka keeps one request
in flight per broker connection: the outputs queued behind each checkpoint. At 140
standard plazas that raised the event-to-estimate latency from p99 0.56 s to 2.2 s
(docs/profiling.md). On a connection of its own a checkpoint only delays the next
checkpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from mode import Service


class ChangelogWriter(Service):
    """Writes records to a table's changelog, after the outputs they must not overtake.

    `flush_outputs` waits until everything handed to the output producer so far has
    been sent: a checkpoint covers input whose estimates and alerts must be on the
    broker first, or a worker restarted from it would never publish them.
    """

    def __init__(
        self,
        bootstrap: str,
        client_options: Mapping[str, Any],
        max_request_bytes: int,
        flush_outputs: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__()
        self._bootstrap = bootstrap
        self._options = client_options
        self._max_request_bytes = max_request_bytes
        self._flush_outputs = flush_outputs
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def write(
        self,
        topic: str,
        partition: int,
        records: Sequence[tuple[bytes, bytes]],
        still_wanted: Callable[[], bool] = lambda: True,
    ) -> bool:
        """Send `records` (key, value) in order once the outputs before them are sent;
        return once all are stored.

        `still_wanted` is asked after the outputs are sent, right before the records
        go: a checkpoint whose partition was taken over meanwhile must not land
        after (and so replace) the newer one of the take-over. False if not sent.
        """
        producer = await self._ready_producer()
        await self._flush_outputs()
        if not still_wanted():
            return False
        sent = [
            await producer.send(topic, value, key=key, partition=partition)
            for key, value in records
        ]
        await asyncio.gather(*sent)
        return True

    async def _ready_producer(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    max_request_size=self._max_request_bytes,
                    acks="all",
                    **self._options,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def on_stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
