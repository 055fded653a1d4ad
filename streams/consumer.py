"""The input topics, read in batches below Faust's streams.

Faust hands every fetched record to its conductor one at a time: a task pair per
record (`wait_first` against the flow switch), an `Event`, a channel queue, the
stream's iteration and processors, and an acknowledgement through the event. For the
input topics that machinery cost about four fifths of a worker's CPU per event
(docs/profiling.md), far more than decoding and every detector together.

`WorkerApp` keeps Faust for everything it is good at (the consumer group and its
rebalances, offset commits after a producer flush, the checkpoint table and its
changelog, the weighing agents, timers and the web page) and changes one thing: its
consumer hands each fetch of input records to a single batch handler, in offset order
per partition, and acknowledges them once the handler has returned. Records of every
other topic (changelogs, re-keyed weighings, pairs) take Faust's own path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import Message

# Takes one fetch of input records; returns once their outputs are on their way.
BatchHandler = Callable[[list[Message]], Awaitable[None]]


@dataclass(frozen=True)
class InputRoute:
    """Which topics go to the batch handler instead of Faust's conductor."""

    topics: frozenset[str]
    handler: BatchHandler


class WorkerApp(faust.App):
    """A Faust app whose consumer hands the input topics' records over in batches."""

    input_route: InputRoute | None = None

    def route_inputs(self, topic: Any, handler: BatchHandler) -> None:
        """Subscribe to `topic` (a Faust topic over the input topics) without a stream:
        its records go to `handler`, a fetch at a time."""
        # The conductor still knows the topic: it is subscribed to, its acks count
        # towards commits, and the assignor co-partitions the checkpoint table with it.
        self.topics.add(topic)
        self.input_route = InputRoute(frozenset(topic.topics), handler)

    def _new_transport(self) -> Any:
        return BatchingTransport(self.conf.broker_consumer, self)


class BatchingConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, with the input topics' records handed over in batches."""

    async def _drain_messages(self, fetcher: Any) -> None:
        route = getattr(self.app, "input_route", None)
        if route is None:
            await super()._drain_messages(fetcher)
            return
        try:
            while not (self.should_stop or fetcher.should_stop):
                self.diag.set_flag(CONSUMER_FETCHING)
                # getmany may return at once in a loop; let the event loop run between.
                await asyncio.sleep(0)
                if not self.should_stop:
                    batch = await self._deliver(self.getmany(timeout=1.0), route.topics)
                    if batch:
                        await self._handle(route.handler, batch)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, fetched: Any, batch_topics: frozenset[str]) -> list[Message]:
        """Pass other topics' records to Faust; return the input records of this fetch.

        The read-offset and gap bookkeeping is Faust's own, record by record, so that
        its commits move exactly as they would through its streams.
        """
        batch: list[Message] = []
        read_offsets = self._read_offset
        since_yield = 0
        async for tp, message in fetched:
            offset = message.offset
            last = read_offsets[tp]
            if last is not None and offset < last:
                continue  # fetched again after a seek; Faust drops these too
            if last and offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            if tp.topic in batch_topics:
                batch.append(message)
            else:
                since_yield += 1
                if since_yield > 100:
                    await asyncio.sleep(0)
                    since_yield = 0
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
            read_offsets[tp] = offset
        return batch

    async def _handle(self, handler: BatchHandler, batch: list[Message]) -> None:
        # Pending until acknowledged: a rebalance's `wait_empty` waits for the batch
        # before committing and handing its partitions to another worker.
        pending = self._unacked_messages
        pending |= set(batch)
        try:
            await handler(batch)
            for message in batch:
                self.ack(message)
        finally:
            pending -= set(batch)


class BatchingTransport(aiokafka_driver.Transport):
    Consumer = BatchingConsumer
