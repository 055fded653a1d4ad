"""Alert bookkeeping for delivery: what fires now, what Alertmanager still has to hear.

Pure: times are passed in. The stream layer publishes every alert message to
`toll.alerts` and lets `AlertBook` decide what to (re-)send to Alertmanager.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from detectors.alerts import Alert

RESEND_S = 30.0
# Per-trip findings: nothing "clears" them, so they are told once and expire in
# Alertmanager after this long instead of firing (and being re-sent) forever.
ONE_SHOT_KINDS = frozenset({"WEIGHT_DISCREPANCY", "OVERLOAD_ADMITTED"})
ONE_SHOT_TTL_S = 3600.0
# Alertmanager resolves an alert whose endsAt passed; re-sent firing alerts push it
# forward, so a worker that dies leaves its alerts to expire, not to fire forever.
ENDS_AFTER_RESENDS = 4


def _iso(epoch_ms: float) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(alert: Alert, now_s: float, generator_url: str = "") -> dict[str, Any]:
    """One alert in Alertmanager's v2 API shape (POST /api/v2/alerts takes a list)."""
    lifetime_s = ONE_SHOT_TTL_S if alert.kind in ONE_SHOT_KINDS else RESEND_S * ENDS_AFTER_RESENDS
    ends_ms = (
        alert.ended_at
        if alert.status == "resolved" and alert.ended_at is not None
        else (now_s + lifetime_s) * 1000
    )
    if alert.status == "resolved":
        # Event time can lag processing time (replays); Alertmanager needs endsAt in the
        # past to show the alert resolved now.
        ends_ms = min(ends_ms, now_s * 1000)
    payload: dict[str, Any] = {
        "labels": {
            "alertname": alert.kind,
            "severity": alert.severity,
            "plaza": alert.plaza_id,
            "subject": alert.subject,
            "alert_id": alert.alert_id,
            "source": "tollmon",
        },
        "annotations": {
            "summary": alert.summary_en,
            "summary_zh": alert.summary_zh,
            "recommendation": alert.recommendation,
            "evidence": orjson.dumps(alert.evidence).decode(),
        },
        "startsAt": _iso(min(alert.started_at, now_s * 1000)),
        "endsAt": _iso(ends_ms),
    }
    if generator_url:
        payload["generatorURL"] = generator_url
    return payload


@dataclass
class AlertBook:
    """Firing alerts by id, and the resolves Alertmanager has not yet acknowledged."""

    resend_s: float = RESEND_S
    firing: dict[str, Alert] = field(default_factory=dict)
    unsent_resolves: dict[str, Alert] = field(default_factory=dict)
    unsent_one_shots: dict[str, Alert] = field(default_factory=dict)
    _last_sent_s: dict[str, float] = field(default_factory=dict)

    def record(self, alert: Alert) -> tuple[Alert | None, bool]:
        """Take one alert message; returns (the firing alert it replaces, whether it is new).

        One-shot alerts are queued for a single delivery and never count as firing.
        """
        if alert.kind in ONE_SHOT_KINDS:
            self.unsent_one_shots[alert.alert_id] = alert
            return None, True
        previous = self.firing.get(alert.alert_id)
        if alert.status == "firing":
            self.firing[alert.alert_id] = alert
            if previous is None or previous.severity != alert.severity:
                self._last_sent_s.pop(alert.alert_id, None)  # send the change at once
            return previous, previous is None
        self.firing.pop(alert.alert_id, None)
        self._last_sent_s.pop(alert.alert_id, None)
        self.unsent_resolves[alert.alert_id] = alert
        return previous, False

    def due(self, now_s: float) -> list[Alert]:
        """Alerts to send now: pending resolves, new or changed alerts, and re-sends."""
        out = [*self.unsent_resolves.values(), *self.unsent_one_shots.values()]
        for alert_id, alert in self.firing.items():
            last = self._last_sent_s.get(alert_id)
            if last is None or now_s - last >= self.resend_s:
                out.append(alert)
        return out

    def delivered(self, alerts: list[Alert], now_s: float) -> None:
        """Alertmanager accepted these."""
        for alert in alerts:
            if alert.kind in ONE_SHOT_KINDS:
                self.unsent_one_shots.pop(alert.alert_id, None)
            elif alert.status == "resolved":
                self.unsent_resolves.pop(alert.alert_id, None)
            elif alert.alert_id in self.firing:
                self._last_sent_s[alert.alert_id] = now_s
