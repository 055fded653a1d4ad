"""The input topics, consumed in whole fetches by a consumer group of the ingest step's own.

Faust hands every record to its streams one at a time: a task pair, an `Event`, a
channel queue and an acknowledgement per record. For the input topics that machinery
cost about four fifths of a worker's CPU (docs/profiling.md), far more than decoding
and every detector together, and its bookkeeping of acknowledgements needed repairs
of its own around rebalances (records fetched and dropped, commits that never moved).

So the input topics have an aiokafka consumer group of their own
(`Settings.consumer_group`), and Faust keeps what it is good at: the weighing agents
and their table, the timers and the web page. This consumer:

- hands each fetch (up to `BATCH_MAX` records) to the ingest step at once;
- commits a partition only up to input that went through the detectors and whose
  outputs the producer has flushed to the broker (at least once);
- on a rebalance, finishes the fetch under way, commits, and only then lets the
  partitions go; records fetched for a partition no longer held are dropped (its new
  owner reads them from the committed offset).

The input partitions are assigned by range, so partition n of every input topic goes
to the same worker: a plaza's events and its detector state live on one partition
number (SPEC §2 keys every input by plaza).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    ConsumerStoppedError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)
from mode import Service

from streams.checkpoint import InputMessage

log = logging.getLogger(__name__)

# A fetch returns at most this many records; whatever arrived within FETCH_WAIT_MS is
# taken: 50 ms is small against the 1 s event-to-alert budget of SPEC §7.
BATCH_MAX = 1_000
FETCH_WAIT_MS = 50
# How often offsets are committed (Faust's default commit interval).
COMMIT_EVERY_S = 2.8
# How often consumer lag is recorded: one scrape interval.
LAG_EVERY_S = 5.0

# Takes a fetch of input records; returns once their outputs are with the producer.
Process = Callable[[list[InputMessage]], Awaitable[None]]


class IngestHooks(Protocol):
    """What the consumer tells the ingest step, and asks of it."""

    def flushed_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset to commit per partition: all before it is flushed."""

    def revoked(self, partitions: set[TopicPartition]) -> None:
        """These partitions leave unless the next assignment gives them back."""

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """The assignment after a rebalance."""

    def lag(self, tp: TopicPartition, records: int) -> None:
        """Records of `tp` on the broker not yet through the ingest step."""

    def idle(self) -> None:
        """A fetch brought nothing to take in: do the work that waits for no input (a
        detector checkpoint that came due after the last batch)."""


class InputConsumer(Service, ConsumerRebalanceListener):  # type: ignore[misc]
    """Consumes the input topics in whole fetches; see the module's documentation."""

    def __init__(
        self,
        client: Callable[[], AIOKafkaConsumer],
        topics: Iterable[str],
        process: Process,
        hooks: IngestHooks,
        flush_outputs: Callable[[], Awaitable[None]],
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self._client = client  # made on start: aiokafka needs the running loop
        self._consumer: AIOKafkaConsumer | None = None
        self._topics = tuple(topics)
        self._process = process
        self._hooks = hooks
        self._flush_outputs = flush_outputs
        self._prepare = prepare
        # Held while a fetch goes through and while a rebalance commits and lets go.
        self._lock = asyncio.Lock()
        self._held: set[TopicPartition] = set()
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()

    async def on_start(self) -> None:
        if self._prepare is not None:
            await self._prepare()
        consumer = self._consumer = self._client()
        consumer.subscribe(self._topics, listener=self)
        await consumer.start()

    async def on_stop(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        async with self._lock:
            try:
                await self._commit()
            except KafkaError as exc:
                log.warning("input offsets not committed at stop: %s", exc)
            await consumer.stop()

    @property
    def _live(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the input consumer is not started")
        return self._consumer

    @Service.task
    async def _consume(self) -> None:
        consumer = self._live
        while not self.should_stop:
            try:
                fetched = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=BATCH_MAX)
            except ConsumerStoppedError:
                return
            async with self._lock:
                # A rebalance may have taken partitions away since the fetch returned.
                records = [r for tp, rs in fetched.items() if tp in self._held for r in rs]
                if records:
                    await self._process(records)
                else:
                    self._hooks.idle()
                if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
                    try:
                        await self._commit()
                    except KafkaError as exc:
                        # A rebalance under way; the revocation commits instead.
                        log.info("input offsets not committed (%s); retried", exc)
            # While records are buffered, nothing above suspends: without this the loop
            # would keep the producer's sender, the fetcher and the timers waiting.
            await asyncio.sleep(0)

    @Service.timer(LAG_EVERY_S)
    async def _record_lag(self) -> None:
        # No lock: nothing here suspends, so a rebalance's callbacks (which change
        # `_held` and forget revoked partitions' lag) run wholly before or after it.
        flushed = self._hooks.flushed_offsets(self._held)
        for tp in list(self._held):
            highwater = self._live.highwater(tp)
            if highwater is not None and tp in flushed:
                self._hooks.lag(tp, max(0, highwater - flushed[tp]))

    async def _commit(self) -> None:
        """Commit what went through, after the producer has flushed its outputs."""
        self._last_commit = time.monotonic()
        offsets = {
            tp: offset
            for tp, offset in self._hooks.flushed_offsets(self._held).items()
            if offset > self._committed.get(tp, -1)
        }
        if not offsets:
            return
        await self._flush_outputs()
        await self._live.commit(offsets)
        self._committed.update(offsets)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            try:
                await self._commit()
            except KafkaError as exc:
                # The group moved on without us: the new owners re-read from the last
                # commit, which is safe (at least once), only more work.
                log.warning("input offsets not committed before a rebalance: %s", exc)
            revoked = set(revoked)
            self._held -= revoked
            for tp in revoked:
                self._committed.pop(tp, None)
            self._hooks.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            self._held = set(assigned)
            self._hooks.assigned(self._held)


def input_consumer_client(
    bootstrap: str,
    group_id: str,
    session_timeout_s: float,
    client_options: Mapping[str, Any],
) -> Callable[[], AIOKafkaConsumer]:
    """Makes the aiokafka consumer of the input topics: manual commits, range assignment."""
    return lambda: AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=int(session_timeout_s * 1000),
        # Three heartbeats per session, at most one every 3 s.
        heartbeat_interval_ms=int(min(3.0, session_timeout_s / 3) * 1000),
        max_poll_interval_ms=max(300_000, int(session_timeout_s * 1000)),
        **client_options,
    )


async def ensure_topics(
    bootstrap: str,
    client_options: Mapping[str, Any],
    topics: Mapping[str, tuple[int, Mapping[str, str]]],
) -> None:
    """Create the topics that do not exist yet: name → (partitions, configuration)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1, topic_configs=dict(config))
            for name, (partitions, config) in topics.items()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *message in response.topic_errors:
                # Another worker may have created it meanwhile.
                if code not in (0, TopicAlreadyExistsError.errno):
                    error = for_code(code).__name__
                    raise KafkaError(f"topic {name} not created: {error} {message}")
    finally:
        await admin.close()
