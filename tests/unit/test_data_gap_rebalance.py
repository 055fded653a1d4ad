"""A plaza whose partition moved to another worker is not a silent plaza here."""

from __future__ import annotations

from detectors.data_gap import DataGapConfig, DataGapMonitor


def test_a_forgotten_plaza_raises_no_data_gap() -> None:
    monitor = DataGapMonitor(DataGapConfig(silence_s=600, min_events_per_hour=1))
    for second in range(0, 120, 2):
        monitor.seen("P1", now_s=second)
        monitor.seen("P2", now_s=second)
    monitor.forget("P2")
    alerts = monitor.check(now_s=2_000)
    assert [a.plaza_id for a in alerts] == ["P1"]
