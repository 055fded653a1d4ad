"""LANE_STALLED (SPEC §4.2) on fake event-time timelines."""

from __future__ import annotations

from detectors.alerts import Alert
from detectors.stall import LaneStallMonitor, StallConfig
from tollmon.events import LaneState, LaneStatus, LaneTransaction

T0 = 1_700_000_000_000
PLAZA = "URC-E01"
S = 1000


def departure(lane_id: str, ts: int, plaza_id: str = PLAZA) -> LaneTransaction:
    return LaneTransaction(
        event_id=f"{plaza_id}-{lane_id}-{ts}",
        ts=ts,
        plaza_id=plaza_id,
        lane_id=lane_id,
        direction="entry",
        payment="ETC",
        result="OK",
        vehicle_class="K1",
        axles=2,
        pass_id=f"p{ts}",
        plate_hash=f"h{ts}",
    )


def status(lane_id: str, ts: int, state: LaneState) -> LaneStatus:
    return LaneStatus(
        event_id=f"{PLAZA}-{lane_id}-{ts}-{state}",
        ts=ts,
        plaza_id=PLAZA,
        lane_id=lane_id,
        direction="entry",
        state=state,
    )


def monitor(*open_lanes: str) -> LaneStallMonitor:
    return LaneStallMonitor(initially_open=[(PLAZA, "entry", lane) for lane in open_lanes])


def queue_ticks(
    m: LaneStallMonitor, queue_veh: float, start: int, end: int, every_ms: int = 5 * S
) -> list[Alert]:
    """The queue estimator's 5 s outputs for the entry approach, from `start` to `end`."""
    return [
        alert
        for ts in range(start, end + 1, every_ms)
        for alert in m.set_queue(PLAZA, "entry", queue_veh, ts)
    ]


def test_an_open_lane_with_a_queue_and_no_departure_for_120_s_is_stalled() -> None:
    m = monitor("01")
    m.on_transaction(departure("01", T0))
    assert queue_ticks(m, 6.0, T0 + 5 * S, T0 + 115 * S) == []

    alerts = queue_ticks(m, 6.0, T0 + 120 * S, T0 + 125 * S)

    assert [(a.kind, a.status, a.severity) for a in alerts] == [
        ("LANE_STALLED", "firing", "warning")
    ]
    alert = alerts[0]
    assert alert.subject == f"{PLAZA}/entry/01"
    # The lane last moved at T0 and the queue was there since T0 + 5 s.
    assert alert.started_at == T0 + 5 * S
    assert alert.evidence["queue_veh"] == 6.0
    assert alert.evidence["last_departure_at"] == T0
    assert "01" in alert.summary_zh
    assert "lane 01" in alert.summary_en


def test_a_silent_lane_without_a_queue_is_just_idle() -> None:
    m = monitor("01")
    m.on_transaction(departure("01", T0))
    assert queue_ticks(m, 0.0, T0 + 5 * S, T0 + 3600 * S) == []


def test_a_queue_that_just_formed_at_a_long_idle_lane_is_not_a_stall() -> None:
    m = monitor("01")
    m.on_transaction(departure("01", T0))
    queue_ticks(m, 0.0, T0, T0 + 600 * S)
    assert queue_ticks(m, 2.0, T0 + 605 * S, T0 + 700 * S) == []
    assert len(queue_ticks(m, 2.0, T0 + 705 * S, T0 + 725 * S)) == 1


def test_a_stall_resolves_on_the_next_departure() -> None:
    m = monitor("01")
    [firing] = queue_ticks(m, 4.0, T0, T0 + 130 * S)

    [resolved] = m.on_transaction(departure("01", T0 + 140 * S))

    assert resolved.status == "resolved"
    assert resolved.alert_id == firing.alert_id
    assert resolved.ended_at == T0 + 140 * S
    assert resolved.evidence["resolved_by"] == "departure"


def test_another_lane_departing_does_not_clear_a_stalled_lane() -> None:
    m = monitor("01", "02")
    alerts = [a for t in range(0, 200, 5) for a in m.on_transaction(departure("02", T0 + t * S))]
    alerts += queue_ticks(m, 4.0, T0, T0 + 200 * S)
    assert [(a.subject, a.status) for a in alerts] == [(f"{PLAZA}/entry/01", "firing")]


def test_a_stall_resolves_when_the_lane_closes() -> None:
    m = monitor("01")
    queue_ticks(m, 4.0, T0, T0 + 130 * S)
    [resolved] = m.on_lane_status(status("01", T0 + 131 * S, "CLOSED"))
    assert resolved.status == "resolved"
    assert resolved.evidence["resolved_by"] == "closed"
    assert queue_ticks(m, 4.0, T0 + 135 * S, T0 + 900 * S) == []


def test_a_stall_resolves_when_the_queue_empties() -> None:
    m = monitor("01")
    queue_ticks(m, 4.0, T0, T0 + 130 * S)
    [resolved] = m.set_queue(PLAZA, "entry", 0.0, T0 + 135 * S)
    assert resolved.status == "resolved"
    assert resolved.ended_at == T0 + 135 * S


def test_a_closed_lane_is_never_stalled_and_an_opened_one_is_timed_from_its_opening() -> None:
    m = monitor()
    assert queue_ticks(m, 8.0, T0, T0 + 300 * S) == []
    m.on_lane_status(status("03", T0 + 300 * S, "OPEN"))
    assert queue_ticks(m, 8.0, T0 + 305 * S, T0 + 415 * S) == []
    [alert] = queue_ticks(m, 8.0, T0 + 420 * S, T0 + 425 * S)
    assert alert.started_at == T0 + 300 * S


def test_a_long_stall_escalates_to_critical_under_the_same_id() -> None:
    m = monitor("01")
    alerts = queue_ticks(m, 4.0, T0, T0 + 900 * S)
    assert [(a.status, a.severity) for a in alerts] == [
        ("firing", "warning"),
        ("firing", "critical"),
    ]
    assert alerts[0].alert_id == alerts[1].alert_id
    assert alerts[1].evidence["silent_s"] == 600.0
    assert [a.severity for a in m.firing()] == ["critical"]


def test_each_plaza_keeps_its_own_clock() -> None:
    m = LaneStallMonitor(initially_open=[(PLAZA, "entry", "01"), ("OTHER", "entry", "01")])
    m.set_queue(PLAZA, "entry", 4.0, T0)
    # Another plaza's feed running ten minutes ahead ages nothing here.
    assert m.advance("OTHER", T0 + 600 * S) == []
    assert len(m.advance(PLAZA, T0 + 120 * S)) == 1


def test_a_departure_reported_late_does_not_rewind_the_lane() -> None:
    m = monitor("01")
    m.on_transaction(departure("01", T0 + 100 * S))
    m.on_transaction(departure("01", T0 + 50 * S))
    queue_ticks(m, 4.0, T0 + 100 * S, T0 + 215 * S)
    [alert] = queue_ticks(m, 4.0, T0 + 220 * S, T0 + 220 * S)
    assert alert.started_at == T0 + 100 * S


def test_thresholds_are_configurable() -> None:
    m = LaneStallMonitor(StallConfig(silence_s=30, min_queue_veh=3), [(PLAZA, "entry", "01")])
    assert queue_ticks(m, 2.0, T0, T0 + 300 * S) == []
    assert len(queue_ticks(m, 3.0, T0 + 305 * S, T0 + 335 * S)) == 1


def test_alert_ids_are_the_same_on_two_identical_runs() -> None:
    def run() -> list[Alert]:
        m = monitor("01", "02")
        alerts = queue_ticks(m, 4.0, T0, T0 + 700 * S)
        alerts += m.on_transaction(departure("01", T0 + 701 * S))
        return alerts + m.on_lane_status(status("02", T0 + 702 * S, "FAULT"))

    first, second = run(), run()
    assert first == second
    assert [a.status for a in first].count("resolved") == 2
