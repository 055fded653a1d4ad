"""Soak: one worker under steady live traffic for a long time; RSS and consumer lag over time.

Issue #8 asks for 30 minutes at half the plaza rating (see benchmarks/plaza_rating.py
for the rating; pass half of it as --plazas). The script writes a network of that many
standard plazas (12 lanes: 6 per direction, one approach detector each), starts
`tollmon worker` on fresh topics, and produces simulated traffic paced in real time at
about 5 events/s per plaza. Every --sample seconds it records the worker's resident
memory, the consumer group's lag (messages produced but not yet committed) and the
counts produced and processed. Not part of CI: it needs the local broker and time.

    python benchmarks/soak.py --plazas 500 --minutes 30 --out soak.csv [--markdown soak.md]

A steady soak shows RSS levelling off and lag staying near zero; a leak shows RSS
climbing for the whole run, and a worker that cannot keep up shows lag growing.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tollmon.events import encode
from tollmon.network import load_network
from tollmon.publish import TOPIC_BY_TYPE, topic_for
from tollmon.simulate import TrafficProfile, generate

REPO = Path(__file__).resolve().parents[1]
EVENTS_PER_VEHICLE = 2  # an approach detection and a lane transaction
APPROACHES_PER_PLAZA = 2


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    rss_mb: float
    lag_messages: int
    produced: int
    processed: int
    behind_schedule_s: float  # how far the producer trails real time (0: kept pace)


def standard_network(plazas: int) -> dict[str, Any]:
    """`plazas` standard plazas: 4 ETC and 2 manual lanes and a detector per direction."""

    def direction(plaza_id: str, side: str) -> dict[str, Any]:
        lanes = [{"id": f"{n:02d}", "type": "ETC" if n <= 4 else "MTC"} for n in range(1, 7)]
        detector = {"id": f"{plaza_id}-{side}-D1", "distance_m": 200, "free_flow_s": 15.0}
        return {"lanes": lanes, "detectors": [detector]}

    return {
        "defaults": {"vehicle_length_m": {"K": 7.5, "H": 15.0, "Z": 12.0}, "thresholds": {}},
        "plazas": [
            {
                "id": f"SOAK-{n:05d}",
                "name": f"soak plaza {n}",
                "road": "G30",
                "lat": 40.0 + n * 1e-4,
                "lon": 85.0,
                "directions": {
                    "entry": direction(f"SOAK-{n:05d}", "EN"),
                    "exit": direction(f"SOAK-{n:05d}", "EX"),
                },
            }
            for n in range(plazas)
        ],
    }


class Worker:
    """`tollmon worker` as a subprocess on its own prefix, port and data directory."""

    def __init__(self, network_file: Path, directory: Path, bootstrap: str, port: int) -> None:
        self.prefix = f"soak{uuid.uuid4().hex[:8]}."
        self.port = port
        self.group = f"{self.prefix}tollmon".replace(".", "-")
        env = {
            **os.environ,
            "TOLLMON_KAFKA_BOOTSTRAP": bootstrap,
            "TOLLMON_TOPIC_PREFIX": self.prefix,
            "TOLLMON_WEB_PORT": str(port),
            "TOLLMON_DATA_DIR": str(directory / "data"),
            "TOLLMON_NETWORK_FILE": str(network_file),
            "TOLLMON_ALERTMANAGER_URL": "",  # a soak must not page anyone
            "TOLLMON_LOG_LEVEL": "warning",
        }
        self.log_path = directory / "worker.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tollmon", "worker"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"worker exited; see {self.log_path}")
            try:
                httpx.get(self.metrics_url, timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(1)
        raise SystemExit("worker /metrics did not answer")

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def processed(self) -> int:
        text = httpx.get(self.metrics_url, timeout=10).text
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name in ("tollmon_events_total", "tollmon_events_invalid_total")
            )
        )

    def rss_mb(self) -> float:
        return float(psutil.Process(self.process.pid).memory_info().rss) / 2**20

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Traffic(threading.Thread):
    """Produces the simulated events, each when the wall clock reaches its event time."""

    def __init__(self, events: Iterator[Any], bootstrap: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self._events = events
        self._prefix = prefix
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": 1})
        self.produced = 0
        self.behind_s = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        for event in self._events:
            if self.stopping.is_set():
                break
            delay = event.ts / 1000 - time.time()
            if delay > 0:
                time.sleep(delay)
            self.behind_s = max(0.0, -delay)
            key = event.plaza_id.encode()
            while True:
                try:
                    self._producer.produce(topic_for(event, self._prefix), encode(event), key)
                    break
                except BufferError:
                    self._producer.poll(0.5)
            self._producer.poll(0)
            self.produced += 1
        self._producer.flush(30)


def consumer_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages on the input topics beyond the group's committed offsets."""
    # A consumer in the group that never subscribes only reads its commits: it does
    # not join the group, so it does not trigger a rebalance of the worker.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(parts)
        return sum(end - (consumer.committed(tp) or 0) for tp, end in ends.items())
    finally:
        consumer.close()


def write_markdown(samples: list[Sample], args: argparse.Namespace, path: Path) -> None:
    rss = [s.rss_mb for s in samples]
    lag = [s.lag_messages for s in samples]
    every = max(1, len(samples) // 30)
    lines = [
        f"# Soak: {args.plazas} plazas, {args.minutes:g} min, "
        f"~{args.plazas * args.events_per_plaza_s:,.0f} events/s offered",
        "",
        f"- RSS: start {rss[0]:.0f} MB, end {rss[-1]:.0f} MB, max {max(rss):.0f} MB",
        f"- consumer lag: max {max(lag):,}, median {statistics.median(lag):,.0f}, "
        f"final {lag[-1]:,} messages",
        f"- produced {samples[-1].produced:,}, processed {samples[-1].processed:,}; "
        f"producer behind schedule at most {max(s.behind_schedule_s for s in samples):.1f} s",
        "",
        "| " + " | ".join(f.name for f in fields(Sample)) + " |",
        "|" + "---:|" * len(fields(Sample)),
    ]
    for sample in samples[::every] + ([samples[-1]] if (len(samples) - 1) % every else []):
        lines.append("| " + " | ".join(_cell(v) for v in astuple(sample)) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(value: object) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plazas", type=int, required=True, help="half the plaza rating")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--events-per-plaza-s", type=float, default=5.0)
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--port", type=int, default=6068, help="the worker's /metrics port")
    parser.add_argument("--out", type=Path, default=Path("soak.csv"))
    parser.add_argument("--markdown", type=Path, help="also write a summary table here")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="tollmon-soak-"))
    network_file = directory / "network.yaml"
    network_file.write_text(yaml.safe_dump(standard_network(args.plazas)), encoding="utf-8")
    rate = args.events_per_plaza_s / EVENTS_PER_VEHICLE / APPROACHES_PER_PLAZA * 3600
    profile = TrafficProfile(vehicles_per_hour=rate, etc_share=0.92)

    worker = Worker(network_file, directory, args.bootstrap, args.port)
    topics = [worker.prefix + t for t in TOPIC_BY_TYPE.values()]
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    try:
        admin.create_topics([NewTopic(t, 4, 1) for t in topics])
    finally:
        admin.close()
    samples: list[Sample] = []
    try:
        worker.wait_ready()
        # Event times start a little ahead so the producer never begins behind.
        start_ms = int(time.time() * 1000) + 2000
        events = generate(load_network(network_file), start_ms, args.minutes * 60, profile)
        traffic = Traffic(events, args.bootstrap, worker.prefix)
        started = time.monotonic()
        traffic.start()
        while traffic.is_alive() and time.monotonic() - started < args.minutes * 60 + 30:
            time.sleep(args.sample)
            sample = Sample(
                elapsed_s=round(time.monotonic() - started, 1),
                rss_mb=round(worker.rss_mb(), 1),
                lag_messages=consumer_lag(args.bootstrap, worker.group, topics),
                produced=traffic.produced,
                processed=worker.processed(),
                behind_schedule_s=round(traffic.behind_s, 2),
            )
            samples.append(sample)
            print(*(f"{f.name}={v}" for f, v in zip(fields(Sample), astuple(sample), strict=True)))
        traffic.stopping.set()
    finally:
        worker.stop()
    with args.out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(f.name for f in fields(Sample))
        writer.writerows(astuple(s) for s in samples)
    if args.markdown is not None and samples:
        write_markdown(samples, args, args.markdown)
    print(f"{len(samples)} samples -> {args.out}; worker log {worker.log_path}")


if __name__ == "__main__":
    main()
