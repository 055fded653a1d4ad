"""SPEC §4.1, transactions-only approaches: queues from departure headways (M/G/1)."""

from __future__ import annotations

import pytest

from detectors.headway import MAX_HEADWAY_UTILISATION, mg1_queue
from tests.unit.queue_timeline import Lanes, QueueEvent, approach, departure, replay


def test_pollaczek_khinchine_matches_the_textbook_cases() -> None:
    # M/M/1 at ρ = 0.5 with 10 s service: Lq = ρ²/(1−ρ) = 0.5, Wq = ρ/(μ−λ) = 10 s.
    lq, wq = mg1_queue(0.05, 10.0, service_scv=1.0, max_utilisation=0.99)
    assert lq == pytest.approx(0.5)
    assert wq == pytest.approx(10.0)
    # M/D/1 halves it.
    lq, wq = mg1_queue(0.05, 10.0, service_scv=0.0, max_utilisation=0.99)
    assert lq == pytest.approx(0.25)
    assert wq == pytest.approx(5.0)


def test_an_overloaded_lane_is_evaluated_at_the_utilisation_cap() -> None:
    lq, _ = mg1_queue(0.2, 10.0, service_scv=0.0, max_utilisation=MAX_HEADWAY_UTILISATION)

    rho = MAX_HEADWAY_UTILISATION
    assert lq == pytest.approx(rho * rho / (2 * (1 - rho)))


def test_a_continuously_busy_lane_is_detected_from_saturation_headways() -> None:
    # A manual lane releasing a vehicle every 14 s for 10 minutes, no service times reported.
    events: list[QueueEvent] = [departure(14.0 * k, service_s=None) for k in range(1, 44)]

    estimates, _ = replay(approach(distance_m=None, free_flow_s=None), events, until_s=600.0)

    last = estimates[-1]
    assert last.method == "headway"
    assert last.level >= 2
    assert last.queue_veh >= 5.0
    assert last.wait_s > 14.0
    assert not last.spillback
    assert last.departures_per_min == pytest.approx(60 / 14, abs=1)


def test_a_lightly_used_lane_has_almost_no_queue() -> None:
    events: list[QueueEvent] = [departure(60.0 * k, service_s=None) for k in range(1, 30)]

    estimates, alerts = replay(approach(distance_m=None, free_flow_s=None), events, until_s=1800.0)

    assert all(e.method == "headway" for e in estimates)
    assert estimates[-1].queue_veh < 0.1
    assert all(e.level == 0 for e in estimates)
    assert alerts == []


def test_the_headway_queue_adds_up_over_the_open_lanes() -> None:
    lanes: Lanes = (("01", "MTC"), ("02", "MTC"))
    one: list[QueueEvent] = [departure(14.0 * k, service_s=None) for k in range(1, 44)]
    two = one + [departure(14.0 * k + 7.0, lane="02", service_s=None) for k in range(1, 44)]

    single, _ = replay(approach(lanes=lanes, distance_m=None, free_flow_s=None), one, until_s=600.0)
    both, _ = replay(approach(lanes=lanes, distance_m=None, free_flow_s=None), two, until_s=600.0)

    assert both[-1].queue_veh == pytest.approx(2 * single[-1].queue_veh, rel=0.01)


def test_move_up_between_queued_vehicles_counts_as_busy_when_service_is_reported() -> None:
    # Lanes report service_ms, which leaves out the 3 s a queued vehicle needs to pull up:
    # 11 s of service every 14 s is a saturated lane, not one idle a fifth of the time.
    events: list[QueueEvent] = [departure(14.0 * k, service_s=11.0) for k in range(1, 44)]

    estimates, alerts = replay(approach(distance_m=None, free_flow_s=None), events, until_s=600.0)

    assert estimates[-1].method == "headway"
    assert estimates[-1].level >= 2
    assert [a.kind for a in alerts] == ["QUEUE_CONGESTION"]


def test_gaps_longer_than_a_move_up_are_idle_time() -> None:
    # 11 s of service every 30 s: the next vehicle arrived after the lane had emptied.
    events: list[QueueEvent] = [departure(30.0 * k, service_s=11.0) for k in range(1, 20)]

    estimates, alerts = replay(approach(distance_m=None, free_flow_s=None), events, until_s=600.0)

    assert estimates[-1].queue_veh < 1.0
    assert all(e.level == 0 for e in estimates)
    assert alerts == []
