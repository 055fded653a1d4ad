"""SPEC §4.1, transactions-only approaches: queues from departure headways (M/G/1)."""

from __future__ import annotations

import pytest

from detectors.headway import MAX_HEADWAY_UTILISATION, LaneServiceWindow, mg1_queue
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


def test_a_lane_is_known_free_between_a_departure_and_the_next_start_less_a_move_up() -> None:
    window = LaneServiceWindow(120.0)
    window.add(10_000, 4.0)  # the first departure: nothing known before it
    window.add(30_000, 4.0)  # service began at 26 s: free from 10 s to 21 s
    window.add(36_000, 5.0)  # began at 31 s, 1 s after the last left: queued, no spell
    window.add(60_000, 4.0, measured=False)  # an estimated service: start uncertain by 4 s

    assert window.idle_at_or_before(9_000) == -1
    assert [window.idle_at_or_before(t) for t in (15_000, 25_000, 33_000)] == [
        15_000,
        21_000,
        21_000,
    ]
    assert window.idle_since(15_000) == 10_000
    assert window.idle_since(25_000) == -1
    # 60 s less 4 s of service, 5 s of move-up and 4 s of doubt about the start.
    assert window.idle_at_or_before(60_000) == 47_000
    assert window.idle_since(47_000) == 36_000


def test_idle_spells_older_than_the_horizon_are_forgotten() -> None:
    window = LaneServiceWindow(120.0)
    for k in range(40):
        window.add(20_000 * k, 4.0)  # free from each departure to 9 s before the next

    # The latest spell ends 9 s before the last departure (780 s); spells ending more than
    # the 300 s horizon before it (before 480 s) are gone: the one from 460 s to 471 s.
    assert window.idle_at_or_before(780_000) == 771_000
    assert window.idle_since(485_000) == 480_000
    assert window.idle_at_or_before(479_000) == -1
    assert window.idle_since(465_000) == -1
