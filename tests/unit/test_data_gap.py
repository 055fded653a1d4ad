"""DATA_GAP (SPEC §4.2) on a fake processing-time clock."""

from __future__ import annotations

import pytest

from detectors.alerts import Alert
from detectors.data_gap import DataGapConfig, DataGapMonitor

NOW0 = 1_700_000_000.0  # processing time, seconds
LAG_MS = 2_000  # events reach us two seconds after they happened


def feed(
    m: DataGapMonitor, plaza_id: str, start_s: float, end_s: float, every_s: float
) -> list[Alert]:
    """`plaza_id` sends every `every_s`; `check` runs after each event, like the agent's timer."""
    alerts: list[Alert] = []
    t = start_s
    while t <= end_s:
        alerts += m.seen(plaza_id, t, event_ts_ms=int(t * 1000) - LAG_MS)
        alerts += m.check(t)
        t += every_s
    return alerts


def test_a_busy_plaza_silent_for_10_minutes_raises_a_critical_data_gap() -> None:
    m = DataGapMonitor()
    assert feed(m, "URC-E01", NOW0, NOW0 + 3600, every_s=10) == []
    last = NOW0 + 3600

    assert m.check(last + 599) == []
    [alert] = m.check(last + 600)

    assert (alert.kind, alert.severity, alert.status) == ("DATA_GAP", "critical", "firing")
    assert alert.subject == alert.plaza_id == "URC-E01"
    # Started when the plaza last spoke, by that event's own time: a stable id.
    assert alert.started_at == int(last * 1000) - LAG_MS
    assert alert.alert_id == f"DATA_GAP:URC-E01:{alert.started_at}"
    assert alert.evidence["silent_s"] == 600.0
    # Counted in one-minute buckets: the oldest, partly covered minute may drop out.
    events_last_hour = alert.evidence["events_last_hour"]
    assert isinstance(events_last_hour, int)
    assert 350 <= events_last_hour <= 361
    assert m.check(last + 1200) == []  # raised once, not on every check
    assert [a.alert_id for a in m.firing()] == [alert.alert_id]


def test_a_data_gap_resolves_when_events_resume() -> None:
    m = DataGapMonitor()
    feed(m, "URC-E01", NOW0, NOW0 + 3600, every_s=10)
    [firing] = m.check(NOW0 + 4500)

    [resolved] = m.seen("URC-E01", NOW0 + 4800, event_ts_ms=int((NOW0 + 4800) * 1000))

    assert resolved.status == "resolved"
    assert resolved.alert_id == firing.alert_id
    assert resolved.ended_at == int((NOW0 + 4800) * 1000)
    assert resolved.evidence["silent_s"] == 1200.0
    assert list(m.firing()) == []
    assert m.seen("URC-E01", NOW0 + 4801) == []


def test_a_plaza_that_never_sent_raises_nothing() -> None:
    # A configured plaza that was never heard of (e.g. not yet connected) stays quiet;
    # only the one that used to send is reported.
    m = DataGapMonitor()
    feed(m, "URC-E01", NOW0, NOW0 + 7200, every_s=10)
    assert m.check(NOW0 + 600) == []
    assert [a.plaza_id for a in m.check(NOW0 + 7200 + 600)] == ["URC-E01"]


@pytest.mark.parametrize(
    ("every_s", "watched"),
    [(30.0, True), (60.0, True), (120.0, False), (300.0, False)],
    ids=["2-per-min", "1-per-min", "1-per-2-min", "1-per-5-min"],
)
def test_only_a_plaza_that_normally_sends_is_watched(every_s: float, watched: bool) -> None:
    # A rural plaza at night sending one event every few minutes can be silent
    # for ten minutes by chance; below one event a minute it is not watched.
    m = DataGapMonitor()
    feed(m, "YLI-W03", NOW0, NOW0 + 3600, every_s=every_s)
    alerts = m.check(NOW0 + 3600 + 900)
    assert bool(alerts) is watched


def test_events_older_than_an_hour_do_not_make_a_plaza_watched() -> None:
    m = DataGapMonitor()
    feed(m, "URC-E01", NOW0, NOW0 + 3600, every_s=10)
    # Then only one event every 5 minutes for two hours: the busy hour has aged out.
    assert feed(m, "URC-E01", NOW0 + 3900, NOW0 + 11100, every_s=300) == []
    assert m.check(NOW0 + 11100 + 900) == []


def test_each_plaza_is_watched_on_its_own() -> None:
    m = DataGapMonitor()
    for t in range(3600):
        m.seen("A", NOW0 + t)
        m.seen("B", NOW0 + t)
    for t in range(3600, 4500):
        m.seen("B", NOW0 + t)
    assert [a.plaza_id for a in m.check(NOW0 + 4500)] == ["A"]


def test_thresholds_are_configurable() -> None:
    m = DataGapMonitor(DataGapConfig(silence_s=60, min_events_per_hour=5))
    feed(m, "URC-E01", NOW0, NOW0 + 50, every_s=10)
    assert len(m.check(NOW0 + 110)) == 1


def test_alert_ids_are_the_same_on_two_identical_runs() -> None:
    def run() -> list[Alert]:
        m = DataGapMonitor()
        alerts = feed(m, "URC-E01", NOW0, NOW0 + 3600, every_s=10)
        alerts += m.check(NOW0 + 4300)
        return alerts + feed(m, "URC-E01", NOW0 + 5000, NOW0 + 5010, every_s=10)

    first, second = run(), run()
    assert [a.status for a in first] == ["firing", "resolved"]
    assert first == second
