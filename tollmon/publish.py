"""Send events to Kafka (keyed by plaza, paced by event time) or write them as JSONL."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from kafka import KafkaProducer

from tollmon.events import Event, encode, event_type
from tollmon.kafka_security import KafkaSecurity

TOPIC_BY_TYPE = {
    "lane_transaction": "toll.lane.transactions",
    "approach_detection": "toll.approach.detections",
    "weigh_measurement": "toll.weigh.measurements",
    "lane_status": "toll.lane.status",
}


def topic_for(event: Event, prefix: str = "") -> str:
    """The input topic an event belongs on."""
    return prefix + TOPIC_BY_TYPE[event_type(event)]


def publish_events(
    events: Iterable[Event],
    bootstrap: str,
    prefix: str = "",
    speed: float = 1.0,
    security: KafkaSecurity | None = None,
) -> int:
    """Produce events keyed by plaza; with speed > 0, keep event-time pacing × speed."""
    options = security.kafka_python_options() if security is not None else {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1, **options)
    count = 0
    wall_start = time.monotonic()
    first_ts: int | None = None
    try:
        for event in events:
            if speed > 0:
                first_ts = event.ts if first_ts is None else first_ts
                due = wall_start + (event.ts - first_ts) / 1000 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            key = event.plaza_id.encode()
            producer.send(topic_for(event, prefix), key=key, value=encode(event))
            count += 1
    finally:
        producer.flush()
        producer.close()
    return count


def write_jsonl(events: Iterable[Event], path: Path) -> int:
    """Write one JSON event per line; returns the count."""
    count = 0
    with path.open("wb") as out:
        for event in events:
            out.write(encode(event))
            out.write(b"\n")
            count += 1
    return count
