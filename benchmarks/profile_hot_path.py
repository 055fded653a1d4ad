"""Where a worker's time goes on the ingest hot path (docs/profiling.md).

Two measurements over the same kind of traffic, a network of many replicated plazas:

- `inproc`: the ingest step's own per-batch code (decode, validate, dedup, reorder,
  detectors, metrics, output encoding) over pre-encoded messages, with producer sends
  that go nowhere. Optionally under pyinstrument (`--profile`).
- `worker`: a real `tollmon worker` in replay time mode draining a backlog pre-filled on
  the broker under a fresh topic prefix; events/s from its own `tollmon_events_total`.
  Optionally sampled by py-spy (`--py-spy FILE`, speedscope or flamegraph by extension).
- `bare`: the reference of issue #7, an aiokafka consumer that only decodes the backlog.

    python benchmarks/profile_hot_path.py inproc --copies 20 --seconds 300 [--profile]
    python benchmarks/profile_hot_path.py worker --copies 20 --seconds 300 [--py-spy out.txt]
    python benchmarks/profile_hot_path.py bare --copies 20 --seconds 300
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest

from streams.agents import Worker, ingest_batch
from streams.emitter import Emitter, Headers
from tollmon.alerting import AlertBook
from tollmon.events import encode, event_type
from tollmon.ingest import Ingest
from tollmon.metrics import Metrics
from tollmon.network import Network, parse_network
from tollmon.pipeline import Pipeline
from tollmon.publish import TOPIC_BY_TYPE
from tollmon.recorder import MetricsRecorder
from tollmon.simulate import TrafficProfile, generate
from tollmon.validation import validator_for

REPO = Path(__file__).resolve().parents[1]
START_MS = 1_714_521_600_000
PARTITIONS = 4
# A standard plaza sends ≈5 events/s at peak (SPEC §7). A vehicle is a detection and a
# transaction (and a weighing for some trucks), so that is ≈4,000 vehicles per hour per
# approach; at the sample plazas' lane mix that only stays stable with ETC at 90 %.
STANDARD = TrafficProfile(vehicles_per_hour=4_000.0, etc_share=0.9)


def synthetic_network(copies: int) -> tuple[Network, dict[str, Any]]:
    """The sample network's plazas replicated `copies` times, ids suffixed `-R<n>`."""
    data = yaml.safe_load((REPO / "config" / "network.yaml").read_text(encoding="utf-8"))
    plazas = []
    for n in range(copies):
        for plaza in data["plazas"]:
            clone = copy.deepcopy(plaza)
            clone["id"] = f"{plaza['id']}-R{n}"
            for approach in (clone.get("directions") or {}).values():
                for item in (approach.get("detectors") or []) + (approach.get("scales") or []):
                    item["id"] = f"{item['id']}-R{n}"
            plazas.append(clone)
    data["plazas"] = plazas
    return parse_network(data, "synthetic"), data


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as the consumer hands it over: where from, key and bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


def recorded_traffic(network: Network, seconds: float, seed: int = 7) -> list[RawMessage]:
    """Standard-plaza traffic for every plaza, encoded and routed as on the input topics."""
    offsets: dict[tuple[str, int], int] = {}
    out: list[RawMessage] = []
    events = generate(network, START_MS, seconds, STANDARD, seed=seed)
    for event in events:
        topic = TOPIC_BY_TYPE[event_type(event)]
        partition = hash(event.plaza_id) % PARTITIONS
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        out.append(RawMessage(topic, partition, offset, event.plaza_id.encode(), encode(event)))
    return out


# ---- in-process ----------------------------------------------------------------------------


class _NullTopic:
    """A topic handle: only its name is used."""

    def get_topic_name(self) -> str:
        return "nowhere"


async def _publish_nowhere(
    topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
) -> None:
    """A producer that takes every message and sends it nowhere."""


@dataclass
class _NullTopics:
    inputs: Any = None
    deadletter: _NullTopic | None = None
    alerts: _NullTopic | None = None
    estimates: _NullTopic | None = None
    by_pass: _NullTopic | None = None
    pairs: _NullTopic | None = None

    def __post_init__(self) -> None:
        for name in ("deadletter", "alerts", "estimates", "by_pass", "pairs"):
            setattr(self, name, _NullTopic())


def _build_worker(network: Network, metrics: Metrics) -> Worker:
    topics: Any = _NullTopics()  # duck-typed: the ingest step only calls send on it
    recorder = MetricsRecorder(metrics)
    clock = time.time
    return Worker(
        topics=topics,
        ingest=Ingest(
            validator_for(network, 72 * 3600 * 1000, "replay"), metrics, clock, time_mode="replay"
        ),
        pipeline=Pipeline(network),
        recorder=recorder,
        emitter=Emitter(topics, recorder, AlertBook(), _publish_nowhere),
        pusher=None,
        clock=clock,
    )


def run_in_process(
    network: Network, messages: list[RawMessage], batch: int, metrics: Metrics
) -> tuple[float, float]:
    """Wall and CPU seconds the ingest step takes over `messages`, in batches of `batch`."""
    worker = _build_worker(network, metrics)

    async def drain() -> None:
        for start in range(0, len(messages), batch):
            await ingest_batch(worker, messages[start : start + batch])

    started = time.perf_counter(), time.process_time()
    asyncio.run(drain())
    return time.perf_counter() - started[0], time.process_time() - started[1]


def in_process(args: argparse.Namespace) -> None:
    network, _ = synthetic_network(args.copies)
    started = time.perf_counter()
    messages = recorded_traffic(network, args.seconds)
    print(
        f"plazas {len(network.plazas)}, events {len(messages):,} "
        f"({len(messages) / args.seconds / len(network.plazas):.1f}/s per plaza), "
        f"generated in {time.perf_counter() - started:.1f} s"
    )
    metrics = Metrics.create()
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        seconds = run_in_process(network, messages, args.batch, metrics)
        profiler.stop()
        Path(args.profile).write_text(profiler.output_text(unicode=True, show_all=False))
        print(f"profile written to {args.profile}")
    else:
        seconds = run_in_process(network, messages, args.batch, metrics)
    wall_s, cpu_s = seconds
    print(
        f"in-process: {len(messages) / wall_s:,.0f} events/s wall ({wall_s:.2f} s), "
        f"{len(messages) / cpu_s:,.0f} events per CPU-second"
    )
    # What one Prometheus scrape of this worker's /metrics costs at this network size.
    started = time.process_time()
    page = generate_latest(metrics.registry)
    lines = page.count(b"\n")
    print(
        f"/metrics: {lines:,} lines, {len(page) / 1e6:.1f} MB, "
        f"{(time.process_time() - started) * 1000:,.0f} ms CPU per scrape"
    )


# ---- a real worker draining a backlog ------------------------------------------------------


def _fill_backlog(bootstrap: str, prefix: str, messages: list[RawMessage]) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    from tollmon.replay import LoadedMessages, Message, replay_messages

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(prefix + name, PARTITIONS, 1)
                for name in (
                    *TOPIC_BY_TYPE.values(),
                    "toll.deadletter",
                    "toll.alerts",
                    "toll.queue.estimates",
                )
            ]
        )
    finally:
        admin.close()
    loaded = LoadedMessages([Message(m.topic, m.key, 0, m.value) for m in messages], 0)
    stats = replay_messages(loaded, bootstrap, prefix)
    print(f"backlog: {stats.sent:,} messages produced at {stats.rate:,.0f}/s")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _committed(admin: Any, group: str, topics: set[str]) -> int:
    """Input messages the worker's consumer group has committed (processed and acked)."""
    offsets = admin.list_group_offsets(group).get(group, {})
    return sum(
        meta.offset for tp, meta in offsets.items() if tp.topic in topics and meta.offset > 0
    )


@dataclass(frozen=True)
class _Progress:
    wall_s: float
    cpu_s: float
    committed: int


def worker_backlog(args: argparse.Namespace) -> None:
    from kafka.admin import KafkaAdminClient

    network, data = synthetic_network(args.copies)
    messages = recorded_traffic(network, args.seconds)
    prefix = f"prof{uuid.uuid4().hex[:8]}."
    _fill_backlog(args.bootstrap, prefix, messages)
    workdir = Path(tempfile.mkdtemp(prefix="tollmon-profile-"))
    network_file = workdir / "network.yaml"
    network_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    env = {
        **os.environ,
        "TOLLMON_KAFKA_BOOTSTRAP": args.bootstrap,
        "TOLLMON_TOPIC_PREFIX": prefix,
        "TOLLMON_WEB_PORT": str(args.port),
        "TOLLMON_DATA_DIR": str(workdir / "data"),
        "TOLLMON_NETWORK_FILE": str(network_file),
        "TOLLMON_ALERTMANAGER_URL": "",
        "TOLLMON_TIME_MODE": "replay",
        "TOLLMON_LOG_LEVEL": "warning",
    }
    log = (workdir / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tollmon", "worker"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    # Progress is read from the broker, not from /metrics: scraping costs the worker CPU.
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    group = f"{prefix}tollmon".replace(".", "-")
    inputs = {prefix + name for name in TOPIC_BY_TYPE.values()}
    spy: subprocess.Popen[bytes] | None = None
    try:
        first: _Progress | None = None
        last: _Progress | None = None
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            done = _committed(admin, group, inputs)
            if done == 0:
                continue
            last = _Progress(time.monotonic(), _cpu_seconds(process.pid), done)
            if first is None:
                first = last
                if args.py_spy:
                    spy = _start_py_spy(process.pid, args.py_spy)
            if done >= len(messages):
                break
        if first is None or last is None or last.committed <= first.committed:
            raise SystemExit(f"the worker processed nothing; log in {workdir}")
        events = last.committed - first.committed
        print(
            f"worker: {last.committed:,} of {len(messages):,} events committed; after the "
            f"first commit {events / (last.wall_s - first.wall_s):,.0f} events/s wall, "
            f"{events / (last.cpu_s - first.cpu_s):,.0f} events per CPU-second"
        )
    finally:
        admin.close()
        if spy is not None:
            spy.wait(timeout=120)
        process.terminate()
        process.wait(timeout=60)
        log.close()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


def bare_consumer(args: argparse.Namespace) -> None:
    """The reference: an aiokafka consumer that only decodes, over the same backlog."""
    from aiokafka import AIOKafkaConsumer

    from tollmon.validation import decode

    network, _ = synthetic_network(args.copies)
    messages = recorded_traffic(network, args.seconds)
    prefix = f"prof{uuid.uuid4().hex[:8]}."
    _fill_backlog(args.bootstrap, prefix, messages)

    async def consume() -> tuple[float, float]:
        consumer = AIOKafkaConsumer(
            *(prefix + name for name in TOPIC_BY_TYPE.values()),
            bootstrap_servers=args.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            decoded = 0
            started: tuple[float, float] | None = None
            while decoded < len(messages):
                batches = await consumer.getmany(timeout_ms=1000)
                if started is None and batches:
                    started = (time.perf_counter(), time.process_time())
                for records in batches.values():
                    for record in records:
                        decode(record.value)
                        decoded += 1
            assert started is not None
            return time.perf_counter() - started[0], time.process_time() - started[1]
        finally:
            await consumer.stop()

    wall_s, cpu_s = asyncio.run(consume())
    print(
        f"bare consumer: {len(messages):,} events decoded; {len(messages) / wall_s:,.0f} "
        f"events/s wall, {len(messages) / cpu_s:,.0f} events per CPU-second"
    )


def _start_py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    fmt = "speedscope" if out.endswith(".json") else "raw" if out.endswith(".txt") else "flamegraph"
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen(
        [
            *(py_spy, "record", "--pid", str(pid), "--rate", "200", "--duration", "20"),
            *("--format", fmt, "--output", out, "--nonblocking"),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("inproc", "worker", "bare"):
        p = sub.add_parser(name)
        p.add_argument("--copies", type=int, default=20, help="replicas of the sample network")
        p.add_argument("--seconds", type=float, default=300.0, help="event time to generate")
    sub.choices["inproc"].add_argument("--batch", type=int, default=500)
    sub.choices["inproc"].add_argument("--profile", metavar="FILE", help="pyinstrument text")
    sub.choices["bare"].add_argument("--bootstrap", default="localhost:9092")
    worker = sub.choices["worker"]
    worker.add_argument("--bootstrap", default="localhost:9092")
    worker.add_argument("--port", type=int, default=6090)
    worker.add_argument("--timeout", type=float, default=600.0)
    worker.add_argument("--py-spy", metavar="FILE", help="py-spy record output (.txt/.json/.svg)")
    worker.add_argument("--keep", action="store_true", help="keep the worker's log directory")
    args = parser.parse_args()
    if args.mode == "inproc":
        in_process(args)
    elif args.mode == "bare":
        bare_consumer(args)
    else:
        worker_backlog(args)


if __name__ == "__main__":
    main()
