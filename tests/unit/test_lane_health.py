"""The lane-health entry point routes every input event to the checks that need it."""

from __future__ import annotations

from detectors.lane_health import LaneHealth
from tollmon.events import ApproachDetection, LaneStatus, LaneTransaction

T0 = 1_700_000_000_000
PLAZA = "URC-E01"


def etc_attempt(lane_id: str, ts: int, *, failed: bool) -> LaneTransaction:
    return LaneTransaction(
        event_id=f"tx-{lane_id}-{ts}",
        ts=ts,
        plaza_id=PLAZA,
        lane_id=lane_id,
        direction="entry",
        payment="ETC",
        result="ETC_FAIL" if failed else "OK",
        vehicle_class="K1",
        axles=2,
        pass_id=f"p{ts}",
        plate_hash=f"h{ts}",
    )


def detection(ts: int) -> ApproachDetection:
    return ApproachDetection(
        event_id=f"det-{ts}", ts=ts, plaza_id=PLAZA, direction="entry", detector_id="D1"
    )


def test_transactions_feed_both_etc_health_and_stalls() -> None:
    health = LaneHealth(initially_open=[(PLAZA, "entry", "01"), (PLAZA, "entry", "02")])
    alerts = []
    for k in range(60):
        alerts += health.on_event(etc_attempt("01", T0 + k * 2000, failed=k % 100 == 50))
        alerts += health.on_event(etc_attempt("02", T0 + k * 2000 + 1000, failed=True))
    assert [(a.kind, a.subject) for a in alerts] == [("ETC_LANE_DEGRADED", f"{PLAZA}/entry/02")]
    assert dict(health.failure_ratios(PLAZA))[(PLAZA, "entry", "02")] == 1.0

    # Lane 02 then stops while a queue builds; detector events move the plaza's clock.
    alerts = health.set_queue(PLAZA, "entry", 5.0, T0 + 121_000)
    alerts += health.on_event(etc_attempt("01", T0 + 200_000, failed=False))
    alerts += health.on_event(detection(T0 + 245_000))
    assert [(a.kind, a.subject) for a in alerts] == [("LANE_STALLED", f"{PLAZA}/entry/02")]
    assert {a.kind for a in health.firing()} == {"ETC_LANE_DEGRADED", "LANE_STALLED"}


def test_a_lane_status_event_closes_a_stalled_lane() -> None:
    health = LaneHealth(initially_open=[(PLAZA, "entry", "01")])
    health.set_queue(PLAZA, "entry", 5.0, T0)
    [stalled] = health.advance(PLAZA, T0 + 120_000)
    closed = LaneStatus(
        event_id="st-1",
        ts=T0 + 130_000,
        plaza_id=PLAZA,
        lane_id="01",
        direction="entry",
        state="FAULT",
        reason="barrier jammed",
    )
    [resolved] = health.on_event(closed)
    assert (resolved.alert_id, resolved.status) == (stalled.alert_id, "resolved")
