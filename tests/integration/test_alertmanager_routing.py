"""Alerts in the worker's Alertmanager-v2 shape travel through the real Alertmanager
(config/alertmanager.yml) to webhook receivers: grouped by kind and plaza, routed by
severity and kind, and a plaza's DATA_GAP inhibits its queue alerts."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
import pytest

from detectors.alerts import Alert, AlertKind, Severity, new_alert
from tests.integration.conftest import Stack, WorkerProcess, read_topic, wait_until
from tests.integration.test_queues_through_kafka import send
from tollmon.alerting import alertmanager_payload
from tollmon.network import load_network
from tollmon.simulate import Surge, TrafficProfile, generate

pytestmark = pytest.mark.integration

# Where config/alertmanager.yml's receivers point (tools/stack.sh substitutes the port).
WEBHOOK = ("127.0.0.1", int(os.environ.get("TOLLMON_WEBHOOK_PORT", "5001")))
GROUP_WAIT_S = 10  # config/alertmanager.yml route.group_wait
RUN = uuid.uuid4().hex[:6]
# Plaza ids of this run only: the shared Alertmanager also holds other runs' alerts.
CONGESTED, SCALES, SILENT = (f"IT{RUN}-{name}" for name in ("CONG", "SCALE", "GAP"))


@dataclass
class Notification:
    receiver_path: str
    body: dict[str, Any]

    @property
    def plazas(self) -> set[str]:
        return {a["labels"].get("plaza", "") for a in self.body["alerts"]}

    def alerts(self) -> list[tuple[str, str, str]]:
        """(alertname, plaza, subject) of each alert, sorted."""
        return sorted(
            (a["labels"]["alertname"], a["labels"]["plaza"], a["labels"]["subject"])
            for a in self.body["alerts"]
        )


@dataclass
class Webhook:
    received: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_run(self, receiver: str) -> list[Notification]:
        with self.lock:
            return [
                n
                for n in self.received
                if n.receiver_path == f"/{receiver}" and any(RUN in p for p in n.plazas)
            ]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with hook.lock:
                hook.received.append(Notification(self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output for failures

    server = ThreadingHTTPServer(WEBHOOK, Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


def alert(kind: AlertKind, severity: Severity, plaza: str, subject: str) -> Alert:
    return new_alert(
        kind=kind,
        severity=severity,
        plaza_id=plaza,
        subject=subject,
        started_at=int(time.time() * 1000) - 60_000,
        summary_zh="测试",
        summary_en="test",
        evidence={"queue_veh": 42},
        recommendation="open 2 more lanes",
    )


def push(stack: Stack, alerts: list[Alert]) -> None:
    body = [alertmanager_payload(a, time.time()) for a in alerts]
    httpx.post(f"{stack.alertmanager_url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def delivered(stack: Stack, webhook: Webhook) -> Webhook:
    # The feed stops first, then its stale queue alert comes: as a worker would send them.
    # (A freshly started Alertmanager also needs the source alert in its inhibitor's
    # cache before the target is dispatched.)
    push(stack, [alert("DATA_GAP", "warning", SILENT, SILENT)])

    def gap_known() -> bool:
        response = httpx.get(
            f"{stack.alertmanager_url}/api/v2/alerts",
            params={"filter": [f'plaza="{SILENT}"', 'alertname="DATA_GAP"']},
            timeout=5,
        )
        return len(response.json()) == 1

    wait_until(gap_known, 30, "the DATA_GAP alert in Alertmanager")
    time.sleep(1)
    push(
        stack,
        [
            alert("QUEUE_CONGESTION", "critical", CONGESTED, f"{CONGESTED}/entry"),
            alert("QUEUE_CONGESTION", "warning", CONGESTED, f"{CONGESTED}/exit"),
            alert("SCALE_BIAS", "warning", SCALES, f"{SCALES}-EN-S1"),
            alert("QUEUE_CONGESTION", "critical", SILENT, f"{SILENT}/entry"),
        ],
    )

    def all_groups_notified() -> bool:
        return (
            len(webhook.of_run("dispatch")) >= 2
            and len(webhook.of_run("maintenance")) >= 1
            and len(webhook.of_run("oncall")) >= 1
        )

    wait_until(
        all_groups_notified,
        GROUP_WAIT_S + 30,
        "notifications for every group",
        lambda: [(n.receiver_path, n.alerts()) for n in webhook.received],
    )
    # One more group_wait: anything that was going to be (wrongly) sent has been.
    time.sleep(GROUP_WAIT_S / 2)
    return webhook


def test_a_plazas_alerts_of_one_kind_arrive_grouped_in_one_notification(
    delivered: Webhook,
) -> None:
    congested = [n for n in delivered.of_run("dispatch") if n.plazas == {CONGESTED}]
    assert len(congested) == 1
    assert congested[0].body["groupLabels"] == {"alertname": "QUEUE_CONGESTION", "plaza": CONGESTED}
    assert congested[0].alerts() == [
        ("QUEUE_CONGESTION", CONGESTED, f"{CONGESTED}/entry"),
        ("QUEUE_CONGESTION", CONGESTED, f"{CONGESTED}/exit"),
    ]


def test_critical_alerts_also_page_on_call_and_only_they_do(delivered: Webhook) -> None:
    paged = [a for n in delivered.of_run("oncall") for a in n.alerts()]
    assert paged == [("QUEUE_CONGESTION", CONGESTED, f"{CONGESTED}/entry")]


def test_scale_alerts_go_to_maintenance_not_to_dispatch(delivered: Webhook) -> None:
    maintenance = [a for n in delivered.of_run("maintenance") for a in n.alerts()]
    assert maintenance == [("SCALE_BIAS", SCALES, f"{SCALES}-EN-S1")]
    assert not [n for n in delivered.of_run("dispatch") if SCALES in n.plazas]


def test_a_data_gap_silences_the_queue_alerts_of_its_plaza(
    stack: Stack, delivered: Webhook
) -> None:
    silent = [a for r in ("dispatch", "oncall") for n in delivered.of_run(r) for a in n.alerts()]
    silent = [a for a in silent if a[1] == SILENT]
    assert silent == [("DATA_GAP", SILENT, SILENT)]
    held = httpx.get(
        f"{stack.alertmanager_url}/api/v2/alerts",
        params={"filter": [f'plaza="{SILENT}"', 'alertname="QUEUE_CONGESTION"']},
        timeout=5,
    ).json()
    assert len(held) == 1
    assert held[0]["status"]["state"] == "suppressed"
    assert held[0]["status"]["inhibitedBy"]


# ------------------------------------------------------------ from a real worker

E2E_PLAZA = "URC-E01"


def test_a_congestion_alert_of_a_real_worker_reaches_the_dispatch_webhook(
    stack: Stack, webhook: Webhook, start_worker: Any
) -> None:
    worker: WorkerProcess = start_worker()
    network = load_network("config/network.yaml")
    duration_s = 600
    start_ms = int(time.time() * 1000) - (duration_s + 60) * 1000
    surge = Surge(E2E_PLAZA, 8.0, start_s=60, direction="entry")
    profile = TrafficProfile(vehicles_per_hour=600, surges=(surge,))
    send(
        stack, worker.prefix, list(generate(network, start_ms, duration_s, profile, 7, [E2E_PLAZA]))
    )

    def worker_alert_ids() -> set[str]:
        alerts = [
            msgspec.json.decode(v, type=Alert)
            for _, v in read_topic(stack.bootstrap, worker.prefix + "toll.alerts")
        ]
        return {a.alert_id for a in alerts if a.kind == "QUEUE_CONGESTION"}

    wait_until(lambda: bool(worker_alert_ids()), 90, "QUEUE_CONGESTION on toll.alerts")
    ids = worker_alert_ids()

    def delivered_ids() -> set[str]:
        with webhook.lock:
            return {
                a["labels"].get("alert_id", "")
                for n in webhook.received
                if n.receiver_path == "/dispatch"
                for a in n.body["alerts"]
            }

    # The plaza's group may already exist (earlier runs): then it is sent on the next
    # group_interval (1 m) rather than after group_wait.
    wait_until(
        lambda: bool(ids & delivered_ids()),
        GROUP_WAIT_S + 90,
        f"the worker's alert {ids}",
        lambda: [(n.receiver_path, n.alerts()) for n in webhook.received],
    )
    notification = next(
        n
        for n in webhook.received
        if any(a["labels"].get("alert_id") in ids for a in n.body["alerts"])
    )
    assert notification.body["groupLabels"] == {"alertname": "QUEUE_CONGESTION", "plaza": E2E_PLAZA}
    assert notification.body["commonLabels"]["source"] == "tollmon"
