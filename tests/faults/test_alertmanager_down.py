"""Alertmanager down while alerts fire: the worker keeps the alert and delivers it, with
the same alert_id, once an Alertmanager answers on the configured address."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import msgspec
import pytest

from detectors.alerts import Alert
from tests.faults.conftest import PLAZA, Outcome, free_port, send
from tests.integration.conftest import Stack, WorkerProcess, read_topic, wait_until
from tollmon.events import Event

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@dataclass
class Webhook:
    """A receiver Alertmanager notifies: the alert_id labels it was told about."""

    url: str
    alert_ids: set[str] = field(default_factory=set)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    received = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.alert_ids |= {a["labels"].get("alert_id", "") for a in body["alerts"]}
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()


def start_private_alertmanager(
    directory: Path, port: int, webhook_url: str
) -> subprocess.Popen[bytes]:
    """An Alertmanager of this test's own (not the shared one), notifying `webhook_url`."""
    config = directory / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: hook\n"
        "  group_by: [alert_id]\n"
        "  group_wait: 1s\n"
        "  group_interval: 1s\n"
        "receivers:\n"
        "  - name: hook\n"
        f"    webhook_configs:\n      - url: {webhook_url}\n",
        encoding="utf-8",
    )
    storage = directory / "am-data"
    storage.mkdir(exist_ok=True)
    with (directory / "alertmanager.log").open("wb") as log:
        return subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={config}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def listed_alert_ids(port: int) -> set[str]:
    alerts = httpx.get(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=2).json()
    return {a["labels"].get("alert_id", "") for a in alerts}


def test_alerts_raised_while_alertmanager_is_down_reach_it_when_it_comes_up(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    valid_stream: list[Event],
    clean_outcome: Outcome,
    webhook: Webhook,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    am_port = free_port()  # nothing listens here yet
    worker = start_worker(TOLLMON_ALERTMANAGER_URL=f"http://127.0.0.1:{am_port}")
    send(stack, worker.prefix, valid_stream)

    def fired_on_topic() -> set[str]:
        return {
            a.alert_id
            for _, v in read_topic(stack.bootstrap, worker.prefix + "toll.alerts")
            if (a := msgspec.json.decode(v, type=Alert)).kind == "QUEUE_CONGESTION"
            and a.status == "firing"
            and a.plaza_id == PLAZA
        }

    wait_until(lambda: bool(fired_on_topic()), 45, "QUEUE_CONGESTION on toll.alerts")
    fired = fired_on_topic()
    down_since = time.monotonic()
    time.sleep(4)  # at least one failed push (every 2 s) while Alertmanager is down
    assert "Alertmanager push failed" in worker.log_tail(400)

    alertmanager = start_private_alertmanager(tmp_path, am_port, webhook.url)
    up_at = time.monotonic()
    try:
        wait_until(
            lambda: fired <= listed_alert_ids(am_port),
            30,
            "the congestion alert in the private Alertmanager",
            lambda: listed_alert_ids(am_port),
        )
        recovery_s = time.monotonic() - up_at
        wait_until(lambda: fired <= webhook.alert_ids, 15, "the webhook notified", lambda: webhook)
    finally:
        alertmanager.terminate()
        alertmanager.wait(timeout=10)

    clean_fired = {
        a.alert_id
        for a in clean_outcome.alerts
        if a.kind == "QUEUE_CONGESTION" and a.status == "firing"
    }
    record_property("fault", "Alertmanager down while QUEUE_CONGESTION fires")
    record_property("injected", f"down {up_at - down_since:.0f} s after {len(fired)} alert fired")
    record_property("lost", len(fired - webhook.alert_ids))
    record_property("alert_ids_diverged", len(fired ^ clean_fired))
    record_property("recovery_s", round(recovery_s, 1))
    assert fired == clean_fired
