"""Queues, waits and lane health live through the real broker, worker, Prometheus and
Alertmanager: a surge at one plaza, a failing ETC antenna at another, then silence."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
import yaml
from kafka import KafkaProducer

from detectors.alerts import Alert
from tests.integration.conftest import (
    REPO,
    Stack,
    WorkerProcess,
    launch_worker,
    prometheus_value,
    read_topic,
    wait_until,
)
from tollmon.events import Event, encode
from tollmon.network import load_network
from tollmon.publish import topic_for
from tollmon.simulate import Surge, TrafficProfile, generate

pytestmark = pytest.mark.integration

SURGE_PLAZA, ETC_PLAZA = "URC-E01", "URC-E02"
DURATION_S = 1800
SURGE = Surge(SURGE_PLAZA, 8.0, start_s=180, end_s=780, direction="entry")
PEAK_S = 900  # phase 1 ends here: the queue is at its worst
DATA_GAP_S = 20


@dataclass
class Scenario:
    worker: WorkerProcess
    stack: Stack
    alerts_seen_in_alertmanager: list[dict[str, object]]
    peak_queue_in_prometheus: float
    final_queue_in_prometheus: float

    def alerts(self) -> list[Alert]:
        topic = self.worker.prefix + "toll.alerts"
        return [
            msgspec.json.decode(v, type=Alert) for _, v in read_topic(self.stack.bootstrap, topic)
        ]


def send(stack: Stack, prefix: str, events: list[Event]) -> None:
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=20)
    for event in events:
        producer.send(topic_for(event, prefix), key=event.plaza_id.encode(), value=encode(event))
    producer.flush()
    producer.close()


def alertmanager_alerts(stack: Stack, kind: str) -> list[dict[str, object]]:
    response = httpx.get(
        f"{stack.alertmanager_url}/api/v2/alerts",
        params={"filter": f'alertname="{kind}"'},
        timeout=5,
    )
    return list(response.json())


def queue_query(port: int) -> str:
    return (
        f'tollmon_queue_vehicles{{plaza="{SURGE_PLAZA}",direction="entry",'
        f'instance="127.0.0.1:{port}"}}'
    )


@pytest.fixture(scope="module")
def scenario(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    directory = tmp_path_factory.mktemp("queues")
    network_file = short_data_gap_network(directory)
    worker = launch_worker(stack, directory, TOLLMON_NETWORK_FILE=str(network_file))
    try:
        network = load_network(network_file)
        start_ms = int(time.time() * 1000) - (DURATION_S + 120) * 1000
        profile = TrafficProfile(
            vehicles_per_hour=600,
            etc_failure_rate=0.01,
            surges=(SURGE,),
            etc_failure_by_lane={(ETC_PLAZA, "entry", "01"): 0.20},
            rate_by_plaza={ETC_PLAZA: 1000},
        )
        events = list(
            generate(
                network, start_ms, DURATION_S, profile, seed=3, plazas=[SURGE_PLAZA, ETC_PLAZA]
            )
        )
        split = start_ms + PEAK_S * 1000
        send(stack, worker.prefix, [e for e in events if e.ts < split])

        def congestion_in_alertmanager() -> bool:
            return any(
                a["labels"]["plaza"] == SURGE_PLAZA  # type: ignore[index]
                for a in alertmanager_alerts(stack, "QUEUE_CONGESTION")
            )

        wait_until(congestion_in_alertmanager, 90, "QUEUE_CONGESTION in Alertmanager")
        seen = alertmanager_alerts(stack, "QUEUE_CONGESTION")
        query = f"max_over_time({queue_query(worker.port)}[10m])"
        wait_until(lambda: (prometheus_value(stack, query) or 0) >= 20, 60, "the surge scraped")
        peak = prometheus_value(stack, query) or 0.0

        send(stack, worker.prefix, [e for e in events if e.ts >= split])

        def resolved_on_topic() -> bool:
            topic = worker.prefix + "toll.alerts"
            return any(
                b'"QUEUE_CONGESTION"' in v and b'"resolved"' in v
                for _, v in read_topic(stack.bootstrap, topic)
            )

        wait_until(resolved_on_topic, 90, "QUEUE_CONGESTION resolved on toll.alerts")

        def queue_now() -> float:
            value = prometheus_value(stack, queue_query(worker.port))
            return float("inf") if value is None else value

        wait_until(lambda: queue_now() <= 2, 60, "the queue gauge back near zero")
        final = queue_now()
        yield Scenario(worker, stack, seen, peak, final)
    finally:
        worker.stop()


def short_data_gap_network(directory: Path) -> Path:
    """The sample network with DATA_GAP after 20 s, so a test can wait for it."""
    data = yaml.safe_load((REPO / "config" / "network.yaml").read_text(encoding="utf-8"))
    defaults = data.setdefault("defaults", {})
    (defaults.get("thresholds") or defaults.setdefault("thresholds", {}))["data_gap_s"] = DATA_GAP_S
    for plaza in data["plazas"]:
        if plaza.get("thresholds"):
            plaza["thresholds"].pop("data_gap_s", None)
    path = directory / "network.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_surge_raises_queue_congestion_with_a_recommendation(scenario: Scenario) -> None:
    firing = [a for a in scenario.alerts() if a.kind == "QUEUE_CONGESTION" and a.status == "firing"]
    assert {a.subject for a in firing} == {f"{SURGE_PLAZA}/entry"}
    alert = firing[0]
    assert alert.severity in {"warning", "critical"}
    assert "lane" in alert.recommendation
    assert alert.summary_zh
    assert alert.summary_en
    assert {"queue_veh", "wait_s"} <= set(alert.evidence)
    surge_start_ms = alert.started_at - alert.started_at % 1000
    assert surge_start_ms > 0


def test_the_congestion_alert_reaches_alertmanager_and_resolves(scenario: Scenario) -> None:
    labels = [a["labels"] for a in scenario.alerts_seen_in_alertmanager]
    assert any(lab["plaza"] == SURGE_PLAZA for lab in labels)  # type: ignore[index]
    ids = {a.alert_id for a in scenario.alerts() if a.kind == "QUEUE_CONGESTION"}
    resolved = {
        a.alert_id
        for a in scenario.alerts()
        if a.kind == "QUEUE_CONGESTION" and a.status == "resolved"
    }
    assert ids == resolved


def test_the_queue_gauge_in_prometheus_follows_the_surge(scenario: Scenario) -> None:
    assert scenario.peak_queue_in_prometheus >= 20
    assert scenario.final_queue_in_prometheus <= 2


def test_a_failing_etc_antenna_is_named_and_only_that_lane(scenario: Scenario) -> None:
    degraded = {a.subject for a in scenario.alerts() if a.kind == "ETC_LANE_DEGRADED"}
    assert degraded == {f"{ETC_PLAZA}/entry/01"}
    ratio = prometheus_value(
        scenario.stack,
        f'tollmon_etc_failure_ratio{{plaza="{ETC_PLAZA}",direction="entry",lane="01"}}',
    )
    assert ratio is not None
    assert ratio > 0.1


def test_a_plaza_whose_feed_stops_raises_data_gap(scenario: Scenario) -> None:
    def gap() -> bool:
        return any(
            a.kind == "DATA_GAP" and a.plaza_id == ETC_PLAZA and a.status == "firing"
            for a in scenario.alerts()
        )

    wait_until(gap, DATA_GAP_S + 60, f"DATA_GAP for {ETC_PLAZA}")
