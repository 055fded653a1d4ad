"""SPEC §4.1 levels and the QUEUE_CONGESTION alert (§4.4): hysteresis, ids, recommendation."""

from __future__ import annotations

import pytest

from detectors.congestion import (
    CongestionHysteresis,
    CongestionThresholds,
    congestion_level,
    lanes_needed,
    recommend_lanes,
)
from detectors.queue import ApproachEstimator
from tests.unit.queue_timeline import (
    PLAZA,
    Lanes,
    QueueEvent,
    approach,
    arrival,
    at,
    by_time,
    departure,
    lane_status,
    replay,
)

DEFAULTS = CongestionThresholds()


@pytest.mark.parametrize(
    ("queue_veh", "wait_s", "open_lanes", "spillback", "level"),
    [
        (0.0, 0.0, 2, False, 0),
        (3.9, 0.0, 2, False, 0),
        (4.0, 0.0, 2, False, 1),
        (10.0, 0.0, 2, False, 2),
        (1.0, 120.0, 2, False, 2),
        (20.0, 0.0, 2, False, 3),
        (0.0, 300.0, 2, False, 3),
        (0.0, 0.0, 2, True, 3),
        (5.0, 0.0, 0, False, 2),
    ],
    ids=[
        "empty",
        "under-2-per-lane",
        "2-per-lane-busy",
        "5-per-lane-congested",
        "long-wait-congested",
        "10-per-lane-severe",
        "very-long-wait-severe",
        "spillback-severe",
        "all-lanes-closed-counts-as-one",
    ],
)
def test_congestion_level_follows_the_spec_thresholds(
    queue_veh: float, wait_s: float, open_lanes: int, spillback: bool, level: int
) -> None:
    assert congestion_level(queue_veh, wait_s, open_lanes, spillback, DEFAULTS) == level


def drive(hysteresis: CongestionHysteresis, start_s: int, seconds: int, level: int) -> list[str]:
    """Hold one level for a span of 5 s outputs; list the transitions with their time."""
    out = []
    for t in range(start_s, start_s + seconds, 5):
        transition = hysteresis.step(t * 1000, level)
        if transition is not None:
            out.append(f"{transition}@{t}")
    return out


def test_level_two_must_be_held_sixty_seconds_to_raise() -> None:
    h = CongestionHysteresis(DEFAULTS)

    assert drive(h, 0, 55, level=2) == []
    assert drive(h, 55, 5, level=1) == []  # the blip restarts the hold
    assert drive(h, 60, 65, level=2) == ["raise@120"]
    assert h.onset_ms == 60_000
    assert h.severity == "warning"


def test_level_three_raises_critical_and_upgrades_a_warning_once() -> None:
    h = CongestionHysteresis(DEFAULTS)
    assert drive(h, 0, 65, level=3) == ["raise@60"]
    assert h.severity == "critical"

    h = CongestionHysteresis(DEFAULTS)
    assert drive(h, 0, 65, level=2) == ["raise@60"]
    assert drive(h, 65, 30, level=3) == ["upgrade@65"]
    # Back to 2 while firing keeps critical: no flapping messages.
    assert drive(h, 95, 30, level=2) == []
    assert h.severity == "critical"


def test_level_one_must_be_held_two_minutes_to_resolve() -> None:
    h = CongestionHysteresis(DEFAULTS)
    drive(h, 0, 65, level=2)

    assert drive(h, 65, 115, level=1) == []
    assert drive(h, 180, 5, level=2) == []  # relapse: the calm period starts over
    assert drive(h, 185, 125, level=0) == ["resolve@305"]
    assert h.calm_since_ms == 185_000
    assert not h.firing


def jam(start_s: float, vehicles: int = 60, lanes: int = 1) -> list[QueueEvent]:
    """A platoon of vehicles at once, served one per 10 s per lane."""
    events: list[QueueEvent] = [arrival(start_s, count=vehicles)]
    for k in range(vehicles):
        lane = f"{k % lanes + 1:02d}"
        events.append(departure(start_s + 15.0 + 10.0 * (k // lanes + 1), lane=lane))
    return events


def test_a_jam_raises_upgrades_and_resolves_one_alert_with_a_stable_id() -> None:
    estimates, alerts = replay(approach(), jam(100.0), until_s=1200.0)

    onset = next(e.ts for e in estimates if e.level >= 2)
    assert [(a.status, a.severity) for a in alerts] == [
        ("firing", "critical"),
        ("resolved", "critical"),
    ]
    assert {a.alert_id for a in alerts} == {f"QUEUE_CONGESTION:{PLAZA}/entry:{onset}"}
    assert all(a.started_at == onset and a.subject == f"{PLAZA}/entry" for a in alerts)
    fired, resolved = alerts
    assert fired.evidence["ts"] == onset + 60_000
    assert resolved.ended_at is not None
    assert resolved.ended_at < resolved.evidence["ts"]  # type: ignore[operator]
    assert "辆" in fired.summary_zh
    assert "veh" in fired.summary_en


def served_fifo(detected_s: list[float], lanes: int) -> list[QueueEvent]:
    """Detections and the departures of first-come-first-served lanes with 10 s service."""
    free_at = [0.0] * lanes
    events: list[QueueEvent] = []
    for t in sorted(detected_s):
        lane = min(range(lanes), key=lambda k: (free_at[k], k))
        start = max(t + 15.0, free_at[lane])
        free_at[lane] = start + 10.0
        events.append(arrival(t))
        events.append(departure(free_at[lane], lane=f"{lane + 1:02d}"))
    return by_time(events)


def test_a_warning_is_upgraded_with_a_new_firing_message_of_the_same_id() -> None:
    # Two saturated lanes with 14 waiting (congested), then 30 more at 120 s (severe).
    detected = [0.0] * 16 + [5.0 * k for k in range(60)] + [120.0] * 30
    lanes: Lanes = (("01", "MTC"), ("02", "MTC"))

    estimates, alerts = replay(
        approach(lanes=lanes, distance_m=500.0), served_fifo(detected, 2), until_s=1200.0
    )

    assert [(a.status, a.severity) for a in alerts] == [
        ("firing", "warning"),
        ("firing", "critical"),
        ("resolved", "critical"),
    ]
    assert len({a.alert_id for a in alerts}) == 1
    assert alerts[1].evidence["level"] == 3
    assert estimates[-1].level == 0


def test_alert_ids_are_the_same_on_two_runs_and_across_batchings() -> None:
    events = by_time(jam(100.0) + jam(1500.0))
    first = replay(approach(), events, until_s=3000.0)
    second = replay(approach(), events, until_s=3000.0)

    estimator = ApproachEstimator(approach())
    split_alerts = []
    for event in events:
        estimator.observe(event)
        split_alerts += estimator.advance(event.ts).alerts
    split_alerts += estimator.advance(at(3000.0)).alerts

    assert first == second
    assert split_alerts == first[1]
    assert len({a.alert_id for a in first[1]}) == 2


def test_no_alert_for_a_short_busy_spell() -> None:
    _, alerts = replay(approach(), jam(100.0, vehicles=8), until_s=600.0)

    assert alerts == []


def test_the_alert_recommends_lanes_from_measured_demand_and_service() -> None:
    # 6 veh/min for 5 min onto one 14 s lane: 1.4 Erlang needs 2 lanes below 85 %.
    lanes: Lanes = (("01", "MTC"), ("02", "MTC"), ("03", "MTC"))
    events: list[QueueEvent] = [arrival(10.0 * k) for k in range(60)]
    events += [departure(15.0 + 14.0 * (k + 1), service_s=14.0) for k in range(60)]
    events += [lane_status(0.0, lane, "CLOSED") for lane in ("02", "03")]
    estimator = ApproachEstimator(approach(lanes=lanes, distance_m=500.0))
    for event in by_time(events):
        estimator.observe(event)
    alerts = estimator.advance(at(600.0)).alerts

    fired = alerts[0]
    assert fired.evidence["lanes_needed"] == 2
    assert fired.evidence["extra_lanes"] == 1
    assert fired.evidence["mean_service_s"] == pytest.approx(14.0)
    assert "Open 1 more lane" in fired.recommendation
    assert "增开 1 条车道" in fired.recommendation


@pytest.mark.parametrize(
    ("per_min", "service_s", "needed"),
    [
        (0.0, 14.0, 1),
        (3.0, 14.0, 1),  # 0.70 Erlang
        (51.0, 1.0, 2),  # exactly 0.85 on one lane is not below it
        (60.0, 14.0, 17),  # 14 Erlang / 0.85 = 16.5
        (120.0, 3.0, 8),  # 6 Erlang / 0.85 = 7.06
    ],
    ids=["no-demand", "light", "exactly-at-target", "manual-peak", "etc-peak"],
)
def test_lanes_needed_keeps_utilisation_strictly_below_the_target(
    per_min: float, service_s: float, needed: int
) -> None:
    assert lanes_needed(per_min, service_s, 0.85) == needed
    load = per_min / 60 * service_s
    assert load / needed < 0.85
    assert needed == 1 or load / (needed - 1) >= 0.85


def test_recommendation_counts_closed_lanes_and_says_when_they_are_not_enough() -> None:
    advice = recommend_lanes(
        60.0, 14.0, open_lanes=10, configured_lanes=12, target_utilisation=0.85
    )

    assert (advice.lanes_needed, advice.extra_lanes, advice.closed_lanes) == (17, 7, 2)
    assert advice.utilisation == pytest.approx(1.4)
    assert "still 5 short" in advice.text(0.85)

    enough = recommend_lanes(6.0, 14.0, open_lanes=3, configured_lanes=3, target_utilisation=0.85)
    assert enough.extra_lanes == 0
    assert "Enough lanes" in enough.text(0.85)
