"""The Faust app factory: one call builds a worker's app, topics, agents and pages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import faust
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST

from streams.agents import Worker, input_consumer, register_agents
from streams.alertmanager import AlertmanagerPusher
from streams.bias_checkpoints import BiasCheckpoints
from streams.changelog import ChangelogWriter
from streams.checkpoint import CHANGELOG, MAX_CHECKPOINT_BYTES, Checkpoints, LogReader
from streams.emitter import Emitter, Headers
from streams.heap import HeapFreezer
from streams.inputs import ensure_topics, input_consumer_client
from streams.topics import PAIRS_TOPIC, Topics, agent_topics, bias_checkpoints_topic
from streams.weighing_agents import register_weighing_agents
from tollmon.alerting import AlertBook
from tollmon.checkpoint import CheckpointPolicy
from tollmon.ingest import Ingest
from tollmon.kafka_security import KafkaSecurity
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.pipeline import Pipeline, PipelineConfig
from tollmon.recorder import MetricsRecorder
from tollmon.settings import Settings
from tollmon.validation import validator_for
from tollmon.weighing_flow import PairAssessor, network_thresholds

# Up to a busy batch's outputs per partition in one request; below the broker's
# default message.max.bytes (1 MiB).
PRODUCER_BATCH_BYTES = 512 * 1024
# Table changelog messages (the open trips') Faust may hold before its agents wait for
# them to be sent. Faust's default of 100 is a few weighings' worth: a burst of re-keyed
# weighings made the pairing agent stop every hundred messages to drain the buffer one
# message at a time, with a "producer buffer full" warning each time (several a second
# at a few thousand plazas). Some 10,000 small messages are a few MB.
CHANGELOG_BUFFER_MESSAGES = 10_000


class TollmonApp(faust.App):
    """Faust's app, which at shutdown stops the input consumer before anything else.

    Faust stops its own consumer and then its tables first, and the services added
    with `app.service` last. The input consumer went on ingesting meanwhile, and the
    open-trips table's last flush (streams/open_trips.py), which Faust's buffer sends
    one message per event-loop turn, waited a whole ingest batch per message: 22 s at
    3,000 plazas. Stopped first, the input consumer commits what its outputs covered
    and leaves the loop to the shutdown.
    """

    input_consumer: Service | None = None

    async def on_stop(self) -> None:
        if self.input_consumer is not None:
            await self.input_consumer.stop()
        await super().on_stop()


def create_app(
    settings: Settings,
    network: Network,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.time,
) -> faust.App:
    """Build a worker app; nothing is started or connected until it runs."""
    metrics = metrics if metrics is not None else Metrics.create()
    security = KafkaSecurity()
    # Built once and shared (one TLS context) by the clients made here; Faust makes
    # its own clients from `broker_credentials`.
    client_options = security.kafka_python_options()
    app = TollmonApp(
        settings.faust_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        # None (PLAINTEXT) unless TOLLMON_KAFKA_SECURITY_PROTOCOL asks for TLS/SASL;
        # Faust hands it to every aiokafka client it makes (consumer, producer, admin).
        broker_credentials=security.faust_credentials(),
        store="memory://",
        datadir=str(settings.data_dir),
        # RocksDB tables (open trips) per app id: a store remembers the changelog offsets
        # it holds, and Faust refuses to start on one made for another app's changelog.
        tabledir=f"tables-{settings.faust_app_id}",
        autodiscover=False,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        # Three heartbeats per session, at most Faust's default of one every 3 s.
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        # Every topic and changelog carries our own msgspec JSON: Faust must not decode it
        # (table recovery reads changelogs with the app's default serializers).
        key_serializer="raw",
        value_serializer="raw",
        # A send waits while its partition's batch is full, until the broker has taken
        # it: with aiokafka's default of 16 KiB a busy second's outputs took a round trip
        # per 16 KiB per partition (docs/profiling.md).
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
    )
    bound_changelog_flush(app.producer.buffer)
    topics = Topics.declare(app, settings)
    recorder = MetricsRecorder(metrics)
    book = AlertBook()
    ingest = Ingest(
        validator_for(network, settings.event_horizon_s * 1000, settings.time_mode),
        metrics,
        clock,
        time_mode=settings.time_mode,
        allowed_lateness_ms=settings.allowed_lateness_s * 1000,
        # Remembered per input partition; a worker holding every partition keeps the total.
        dedup_capacity=max(1, settings.dedup_capacity // settings.partitions),
    )
    pipeline = Pipeline(network, _pipeline_config(settings))

    producer = AppProducer(app)

    async def flush_outputs() -> None:
        await producer.flush()

    changelog = ChangelogWriter(
        settings.kafka_bootstrap,
        client_options,
        MAX_CHECKPOINT_BYTES,
        flush_outputs=flush_outputs,
    )
    app.service(changelog)  # type: ignore[arg-type]
    worker = Worker(
        topics=topics,
        ingest=ingest,
        pipeline=pipeline,
        recorder=recorder,
        emitter=Emitter(topics, recorder, book, producer),
        pusher=(
            AlertmanagerPusher(settings.alertmanager_url, book, clock)
            if settings.alertmanager_url
            else None
        ),
        clock=clock,
        checkpoints=Checkpoints(
            f"{settings.consumer_group}-{CHANGELOG}",
            ingest,
            pipeline,
            settings.input_topics,
            LogReader(settings.kafka_bootstrap, settings.consumer_group, client_options),
            changelog,
            clock,
            CheckpointPolicy(settings.checkpoint_every_s, settings.checkpoint_every_events),
        ),
    )
    register_agents(app, worker)
    client = input_consumer_client(
        settings.kafka_bootstrap,
        settings.consumer_group,
        settings.session_timeout_s,
        client_options,
    )
    consumer = input_consumer(worker, client, settings, flush_outputs, client_options)
    app.service(consumer)
    app.input_consumer = consumer
    if settings.gc_freeze:
        app.service(HeapFreezer())  # type: ignore[arg-type]
    register_weighing_agents(
        app,
        topics,
        recorder,
        worker.emitter,
        PairAssessor(network),
        horizon_ms=int(network_thresholds(network).unpaired_horizon_s * 1000),
        partitions=settings.partitions,
        idle_after_s=settings.reorder_idle_s,
        clock=clock,
        checkpoints=BiasCheckpoints(
            bias_checkpoints_topic(settings),
            settings.topic(PAIRS_TOPIC),
            changelog,
            LogReader(settings.kafka_bootstrap, settings.consumer_group, client_options),
            clock,
        ),
    )
    _publish_plaza_info(metrics, network)
    _register_metrics_page(app, metrics)
    return app


def bound_changelog_flush(buffer: Any) -> None:
    """Faust's buffer of table changelog messages, with a flush that ends.

    Faust flushes it before each commit of the weighing group, and its flush waits
    until the buffer is empty. The pairing agent refills it all the while, so at a few
    thousand plazas a commit took 24–44 s instead of coming every 2.8 s, and a worker
    that crashed had that much more of the by-pass topic to read again. What a commit
    needs is every message written before it: the queue's first `size`, and the one
    being sent, if any. `flush_atmost(n)` returns once n sends were seen (each wake-up
    is at least one, in queue order) or the queue is empty.
    """
    buffer.max_messages = CHANGELOG_BUFFER_MESSAGES

    async def flush() -> None:
        await buffer.flush_atmost(buffer.size + 1)

    buffer.flush = flush


class AppProducer:
    """Sends by topic name through the app's producer, the one Faust flushes on commit."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._producer: Any = None

    async def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> object:
        producer = self._producer
        if producer is None:
            producer = self._producer = await self._app.maybe_start_producer()
        return await producer.send(topic, key, value, None, None, headers)

    async def flush(self) -> None:
        """Wait until every message sent through here is with the broker.

        The Kafka client's flush, not `app.producer.flush()`: Faust's flush first drains
        its buffer of table changelog messages (the open trips' records and deadlines)
        one message at a time, while the weighing agent refills it, and the input loop,
        which flushes before each commit, stood still for seconds (docs/profiling.md,
        eighth round). Faust flushes that buffer itself, before its own commits.
        """
        if self._producer is not None:  # nothing was sent through here yet
            await self._producer._ensure_producer().flush()


def create_agent_topics(settings: Settings) -> None:
    """Create the weighing agents' topics that do not exist yet (see `agent_topics`)."""
    options = KafkaSecurity().kafka_python_options()
    asyncio.run(ensure_topics(settings.kafka_bootstrap, options, agent_topics(settings)))


def make_worker(app: faust.App, log_level: str) -> faust.Worker:
    """The Faust worker that runs `app`, logging at `log_level`, without a console spinner.

    At levels of WARN and above, Faust feeds a terminal spinner from a handler of every
    log record, and sets the root logger to DEBUG for it: every debug call of Faust,
    mode and aiokafka (one per message sent, one per request) then builds its record.
    A service has no terminal to spin on.
    """
    worker = faust.Worker(app, loglevel=log_level)
    worker.spinner = None
    return worker


def _pipeline_config(settings: Settings) -> PipelineConfig:
    return PipelineConfig(
        idle_after_s=settings.reorder_idle_s,
        max_hold_s=settings.allowed_lateness_s,
        feed_disorder_s=settings.feed_disorder_s,
    )


def _publish_plaza_info(metrics: Metrics, network: Network) -> None:
    for plaza in network.plazas:
        metrics.plaza_info.labels(
            plaza.id, plaza.name, plaza.road, f"{plaza.lat:.5f}", f"{plaza.lon:.5f}"
        ).set(1)


def _register_metrics_page(app: faust.App, metrics: Metrics) -> None:
    async def metrics_page(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        parts = []
        for part in metrics.exposition_parts():
            parts.append(part)
            # Ingest runs between parts: at thousands of plazas the page is some 0.1 s of
            # CPU, which in one piece held every event arriving meanwhile (docs/profiling.md).
            await asyncio.sleep(0)
        return view.bytes(b"".join(parts), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page("/metrics")(metrics_page)
