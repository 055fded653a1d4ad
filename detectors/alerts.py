"""The one alert schema of SPEC.md §4.4, shared by every detector."""

from __future__ import annotations

from typing import Literal

import msgspec

Severity = Literal["info", "warning", "critical"]
AlertStatus = Literal["firing", "resolved"]
AlertKind = Literal[
    "QUEUE_CONGESTION",
    "ETC_LANE_DEGRADED",
    "LANE_STALLED",
    "DATA_GAP",
    "WEIGHT_DISCREPANCY",
    "OVERLOAD_ADMITTED",
    "SCALE_BIAS",
]
EvidenceValue = float | int | str | bool | None


def make_alert_id(kind: str, subject: str, started_at: int) -> str:
    """A stable id: the same condition on the same input always gets the same id."""
    return f"{kind}:{subject}:{started_at}"


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """An alert as published on `toll.alerts` and pushed to Alertmanager."""

    alert_id: str
    kind: AlertKind
    severity: Severity
    status: AlertStatus
    plaza_id: str
    subject: str
    started_at: int
    ended_at: int | None
    summary_zh: str
    summary_en: str
    evidence: dict[str, EvidenceValue]
    recommendation: str

    def resolved(self, ended_at: int, evidence: dict[str, EvidenceValue] | None = None) -> Alert:
        """This alert's resolved form, ending at event time `ended_at`."""
        return msgspec.structs.replace(
            self,
            status="resolved",
            ended_at=ended_at,
            evidence=self.evidence if evidence is None else evidence,
        )


def new_alert(
    *,
    kind: AlertKind,
    severity: Severity,
    plaza_id: str,
    subject: str,
    started_at: int,
    summary_zh: str,
    summary_en: str,
    evidence: dict[str, EvidenceValue],
    recommendation: str,
) -> Alert:
    """A firing alert with its stable id derived from kind, subject and start time."""
    return Alert(
        alert_id=make_alert_id(kind, subject, started_at),
        kind=kind,
        severity=severity,
        status="firing",
        plaza_id=plaza_id,
        subject=subject,
        started_at=started_at,
        ended_at=None,
        summary_zh=summary_zh,
        summary_en=summary_en,
        evidence=evidence,
        recommendation=recommendation,
    )
