"""Alert delivery bookkeeping and the Alertmanager v2 payload."""

from __future__ import annotations

import json

import pytest

from detectors.alerts import Alert, new_alert
from tollmon.alerting import AlertBook, alertmanager_payload
from tollmon.metrics import Metrics
from tollmon.recorder import MetricsRecorder

T0_MS = 1_764_300_000_000


def congestion(severity: str = "warning") -> Alert:
    return new_alert(
        kind="QUEUE_CONGESTION",
        severity=severity,  # type: ignore[arg-type]  # tests pass valid literals
        plaza_id="URC-E01",
        subject="URC-E01/entry",
        started_at=T0_MS,
        summary_zh="乌鲁木齐东入口拥堵",
        summary_en="URC-E01 entry congested",
        evidence={"queue_veh": 42.0, "wait_s": 130.0},
        recommendation="open 2 more lanes",
    )


def test_the_payload_carries_labels_annotations_and_times() -> None:
    payload = alertmanager_payload(congestion(), now_s=T0_MS / 1000 + 60)
    assert payload["labels"] == {
        "alertname": "QUEUE_CONGESTION",
        "severity": "warning",
        "plaza": "URC-E01",
        "subject": "URC-E01/entry",
        "alert_id": f"QUEUE_CONGESTION:URC-E01/entry:{T0_MS}",
        "source": "tollmon",
    }
    assert payload["annotations"]["recommendation"] == "open 2 more lanes"
    assert json.loads(payload["annotations"]["evidence"]) == {"queue_veh": 42.0, "wait_s": 130.0}
    assert payload["startsAt"] == "2025-11-28T03:20:00Z"
    # Firing: endsAt lies ahead, so a dead worker's alert expires instead of firing forever.
    assert payload["endsAt"] > "2025-11-28T03:21:00Z"


def test_a_resolved_alert_ends_at_its_end_time() -> None:
    resolved = congestion().resolved(T0_MS + 300_000)
    payload = alertmanager_payload(resolved, now_s=T0_MS / 1000 + 600)
    assert payload["endsAt"] == "2025-11-28T03:25:00Z"


def test_the_book_sends_new_alerts_at_once_and_re_sends_while_firing() -> None:
    book = AlertBook(resend_s=30)
    book.record(congestion())
    assert len(book.due(now_s=0)) == 1
    book.delivered(book.due(now_s=0), now_s=0)
    assert book.due(now_s=10) == []
    assert len(book.due(now_s=31)) == 1


def test_a_severity_change_is_sent_at_once() -> None:
    book = AlertBook(resend_s=30)
    book.record(congestion())
    book.delivered(book.due(0), 0)
    book.record(congestion("critical"))
    assert [a.severity for a in book.due(now_s=1)] == ["critical"]


def test_a_resolve_is_kept_until_delivered() -> None:
    book = AlertBook()
    book.record(congestion())
    book.record(congestion().resolved(T0_MS + 1))
    due = book.due(0)
    assert [a.status for a in due] == ["resolved"]
    assert book.due(100) == due  # not delivered yet: still due
    book.delivered(due, 100)
    assert book.due(200) == []


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


def firing_gauge(metrics: Metrics, severity: str) -> float | None:
    return metrics.registry.get_sample_value(
        "tollmon_alerts_firing",
        {"kind": "QUEUE_CONGESTION", "severity": severity, "plaza": "URC-E01"},
    )


def test_the_firing_gauge_follows_raise_upgrade_and_resolve(metrics: Metrics) -> None:
    book, recorder = AlertBook(), MetricsRecorder(metrics)
    for alert in (congestion(), congestion("critical"), congestion().resolved(T0_MS + 1)):
        recorder.alert(alert, *book.record(alert))
        if alert.status == "firing":
            assert firing_gauge(metrics, alert.severity) == 1
    assert firing_gauge(metrics, "warning") == 0
    assert firing_gauge(metrics, "critical") == 0
    total = metrics.registry.get_sample_value(
        "tollmon_alerts_total", {"kind": "QUEUE_CONGESTION", "severity": "warning"}
    )
    assert total == 1  # the upgrade is the same alert, not a new one


def overload() -> Alert:
    return new_alert(
        kind="OVERLOAD_ADMITTED",
        severity="warning",
        plaza_id="URC-E01",
        subject="trip-1",
        started_at=T0_MS,
        summary_zh="超限车辆入口放行",
        summary_en="overloaded truck admitted",
        evidence={"gross_kg": 52_000},
        recommendation="check lane 06",
    )


def test_a_per_trip_alert_is_delivered_once_and_expires_on_its_own(metrics: Metrics) -> None:
    book, recorder = AlertBook(), MetricsRecorder(metrics)
    recorder.alert(overload(), *book.record(overload()))
    due = book.due(now_s=0)
    assert due == [overload()]
    book.delivered(due, now_s=0)
    assert book.due(now_s=3_000) == []
    assert book.firing == {}
    payload = alertmanager_payload(overload(), now_s=T0_MS / 1000)
    assert payload["endsAt"] == "2025-11-28T04:20:00Z"
    labels = {"kind": "OVERLOAD_ADMITTED", "severity": "warning", "plaza": "URC-E01"}
    assert metrics.registry.get_sample_value("tollmon_alerts_firing", labels) is None
    total = {"kind": "OVERLOAD_ADMITTED", "severity": "warning"}
    assert metrics.registry.get_sample_value("tollmon_alerts_total", total) == 1


def test_a_revoked_partition_stops_reporting_its_consumer_lag(metrics: Metrics) -> None:
    recorder = MetricsRecorder(metrics)
    labels = {"topic": "toll.lane.transactions", "partition": "2"}
    recorder.consumer_lag("toll.lane.transactions", 2, 40)
    assert metrics.registry.get_sample_value("tollmon_consumer_lag_messages", labels) == 40
    recorder.forget_consumer_lag("toll.lane.transactions", 2)
    assert metrics.registry.get_sample_value("tollmon_consumer_lag_messages", labels) is None
