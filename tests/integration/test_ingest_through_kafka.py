"""Events through the real broker and worker: counted, dead-lettered, scraped."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.integration.conftest import Stack, WorkerProcess, wait_until
from tollmon.events import encode, event_type
from tollmon.network import load_network
from tollmon.publish import topic_for
from tollmon.simulate import TrafficProfile, generate

pytestmark = pytest.mark.integration


def invalid_messages(now_ms: int, valid_tx: bytes) -> list[tuple[str, bytes, str]]:
    """(input topic, payload, expected reason) for each kind of bad input."""
    tx = json.loads(valid_tx)

    def changed(**kw: object) -> bytes:
        return json.dumps({**tx, **kw}).encode()

    missing = {k: v for k, v in tx.items() if k != "pass_id"}
    weigh = {
        "type": "weigh_measurement",
        "event_id": "bad-weight-1",
        "ts": now_ms,
        "plaza_id": "URC-E01",
        "scale_id": "URC-E01-EN-S1",
        "station": "entry",
        "lane_id": "01",
        "pass_id": "p",
        "plate_hash": "h",
        "axles": 3,
        "gross_kg": 900_000,
    }
    return [
        ("toll.lane.transactions", b"\x00\x9f not json at all", "not_json"),
        ("toll.lane.transactions", json.dumps(missing).encode(), "missing_field"),
        ("toll.lane.transactions", changed(event_id="bad-type", axles="two"), "wrong_type"),
        ("toll.lane.transactions", changed(event_id="bad-plaza", plaza_id="NOPE"), "unknown_plaza"),
        ("toll.weigh.measurements", json.dumps(weigh).encode(), "out_of_range"),
        (
            "toll.lane.transactions",
            changed(event_id="bad-future", ts=now_ms + 3_600_000),
            "future_ts",
        ),
        ("toll.lane.transactions", valid_tx, "duplicate"),
    ]


def test_valid_events_are_counted_and_invalid_ones_dead_lettered_with_reasons(
    stack: Stack, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    network = load_network("config/network.yaml")
    now_ms = int(time.time() * 1000)
    events = list(
        generate(network, now_ms - 120_000, 110, TrafficProfile(1200), seed=7, plazas=["URC-E01"])
    )
    expected_by_type = Counter(event_type(e) for e in events)
    first_tx = next(e for e in events if event_type(e) == "lane_transaction")
    bad = invalid_messages(now_ms, encode(first_tx))

    producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
    for event in events:
        producer.send(
            topic_for(event, worker.prefix), key=event.plaza_id.encode(), value=encode(event)
        )
    for topic, payload, _ in bad:
        producer.send(worker.prefix + topic, key=b"URC-E01", value=payload)
    producer.flush()
    producer.close()

    n_valid, n_bad = len(events), len(bad)
    wait_until(
        lambda: (
            worker.total("tollmon_events_total") == n_valid
            and worker.total("tollmon_events_invalid_total") == n_bad
        ),
        90,
        f"{n_valid} valid and {n_bad} invalid events counted",
    )
    for kind, count in expected_by_type.items():
        assert worker.total("tollmon_events_total", type=kind) == count
    expected_reasons = Counter(reason for _, _, reason in bad)
    for reason, count in expected_reasons.items():
        assert worker.total("tollmon_events_invalid_total", reason=reason) == count

    consumer = KafkaConsumer(
        worker.prefix + "toll.deadletter",
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    letters = []
    for message in consumer:
        letters.append(message)
        if len(letters) == n_bad:
            break
    consumer.close()
    assert len(letters) == n_bad
    assert Counter(dict(m.headers)["tollmon.reason"].decode() for m in letters) == expected_reasons
    payloads = {m.value for m in letters}
    assert {payload for _, payload, _ in bad} == payloads
    for message in letters:
        headers = dict(message.headers)
        assert headers["tollmon.source.topic"].decode().startswith(worker.prefix)
        assert int(headers["tollmon.source.offset"]) >= 0

    def prometheus_sees_all() -> bool:
        response = httpx.get(
            f"{stack.prometheus_url}/api/v1/query",
            params={"query": f'sum(tollmon_events_total{{instance="127.0.0.1:{worker.port}"}})'},
            timeout=5,
        )
        result = response.json()["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) == n_valid

    wait_until(
        prometheus_sees_all, 60, f"Prometheus to answer sum(tollmon_events_total) = {n_valid}"
    )
