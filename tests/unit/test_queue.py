"""SPEC §4.1, input-output method: queue, wait, spillback and drift correction per approach."""

from __future__ import annotations

import math
import tracemalloc

import pytest

from detectors.queue import ApproachEstimator
from tests.unit.queue_timeline import (
    Lanes,
    QueueEvent,
    approach,
    arrival,
    at,
    by_time,
    departure,
    lane_status,
    replay,
    seconds_of,
)
from tollmon.events import ApproachDetection

TAU_S = 15.0
SERVICE_S = 10.0


def free_flow(period_s: float, until_s: float, start_s: float = 0.0) -> list[QueueEvent]:
    """One vehicle every period_s, served on arrival at the barrier: nobody waits."""
    events: list[QueueEvent] = []
    t = start_s
    while t < until_s:
        events.append(arrival(t))
        events.append(departure(t + TAU_S + SERVICE_S, service_s=SERVICE_S))
        t += period_s
    return events


def test_constant_rate_free_flow_has_no_queue_and_level_zero() -> None:
    estimates, alerts = replay(approach(), free_flow(20.0, 1800.0), until_s=1800.0)

    assert [seconds_of(e) for e in estimates] == [5.0 * k for k in range(len(estimates))]
    assert len(estimates) >= 360
    assert all(e.queue_veh == 0.0 and e.wait_s == 0.0 and e.level == 0 for e in estimates)
    assert all(e.method == "input_output" and not e.spillback for e in estimates)
    assert estimates[300].arrivals_per_min == 3.0
    assert estimates[300].departures_per_min == 3.0
    assert alerts == []


def test_outputs_come_every_five_seconds_of_event_time_from_the_first_event() -> None:
    estimates, _ = replay(approach(), [arrival(2.0), arrival(61.0)], until_s=61.0)

    assert [seconds_of(e) for e in estimates] == [5.0 * k for k in range(1, 13)]


def test_surge_builds_exactly_the_queue_of_the_cumulative_curves() -> None:
    # Ten vehicles at once; the barrier serves one every 10 s from their arrival there at 15 s.
    events: list[QueueEvent] = [arrival(0.0, count=10)]
    starts = [TAU_S + SERVICE_S * k for k in range(10)]
    events += [departure(s + SERVICE_S) for s in starts]

    estimates, _ = replay(approach(), events, until_s=150.0)

    for e in estimates:
        t = seconds_of(e)
        # Vehicles at the barrier (from 15 s on) whose service has not started yet.
        expected = sum(1 for s in starts if s > t) if t >= TAU_S else 0
        assert e.queue_veh == expected, f"t={t}"
        # Vehicle k waited 10·k s; the wait is the mean over those who left in (t−30, t].
        left = [s - TAU_S for s in starts if t - 30 < s + SERVICE_S <= t]
        assert e.wait_s == pytest.approx(sum(left) / len(left) if left else 0.0), f"t={t}"
    assert max(e.queue_veh for e in estimates) == 9.0


def test_wait_equals_the_known_delay_of_a_standing_queue() -> None:
    # A saturated lane with 3 vehicles always waiting: everyone waits 3 service times.
    events: list[QueueEvent] = [arrival(0.0, count=4)]
    vehicles = 120
    events += [arrival(SERVICE_S * (k - 3)) for k in range(4, vehicles)]
    events += [departure(TAU_S + SERVICE_S * (k + 1)) for k in range(vehicles)]

    estimates, _ = replay(approach(), events, until_s=1000.0)

    steady = [e for e in estimates if 100.0 <= seconds_of(e) <= 1000.0]
    assert all(e.wait_s == pytest.approx(3 * SERVICE_S) for e in steady)
    assert all(e.queue_veh == 3.0 for e in steady)


def test_queue_spreads_over_the_open_lanes_and_grows_when_one_closes() -> None:
    lanes: Lanes = (("01", "MTC"), ("02", "MTC"))
    events: list[QueueEvent] = [lane_status(0.0, "02", "CLOSED"), arrival(1.0, count=6)]

    estimates, _ = replay(approach(lanes=lanes), events, until_s=30.0)

    last = estimates[-1]
    assert last.open_lanes == 1
    assert last.queue_veh == 5.0
    assert last.queue_m == pytest.approx(5 * 7.5)


def test_spillback_when_the_queue_reaches_the_detector() -> None:
    # A 30 m detector holds four 7.5 m cars; nine waiting vehicles pass it.
    events: list[QueueEvent] = [arrival(0.0, count=10)]
    events += [departure(TAU_S + SERVICE_S * (k + 1)) for k in range(10)]

    estimates, _ = replay(approach(distance_m=30.0), events, until_s=150.0)

    spilled = [e for e in estimates if e.spillback]
    assert spilled
    assert all(e.queue_m >= 30.0 and e.level == 3 for e in spilled)
    assert not estimates[-1].spillback
    assert estimates[-1].queue_veh == 0.0


def test_queue_length_uses_the_class_lengths_of_recent_departures() -> None:
    trucks: list[QueueEvent] = [arrival(5.0 * k) for k in range(40)]
    trucks += [
        departure(5.0 * k + TAU_S + 2.0, vehicle_class="H4", service_s=2.0) for k in range(40)
    ]
    trucks += [arrival(200.0, count=4)]

    estimates, _ = replay(approach(), trucks, until_s=220.0)

    last = estimates[-1]
    assert last.queue_veh == 3.0
    # Mostly trucks have left lately, so the queue is measured mostly in truck lengths.
    assert 3 * 7.5 < last.queue_m <= 3 * 15.0


def phantom_cycle(start_s: float, phantoms_every: int) -> list[QueueEvent]:
    """Three minutes of free flow in which the detector also counts phantom vehicles."""
    events = free_flow(20.0, start_s + 180.0, start_s=start_s)
    detections = [e for e in events if isinstance(e, ApproachDetection)]
    for k, detection in enumerate(detections):
        if k % phantoms_every == 0:
            events.append(arrival((detection.ts - at(0.0)) / 1000 + 1.0))
    return events


def test_reanchoring_when_observed_empty_removes_detector_drift() -> None:
    # Every cycle: 3 min of traffic with a phantom count in every 3rd vehicle, then 2 min quiet.
    events: list[QueueEvent] = []
    for cycle in range(12):
        events += phantom_cycle(300.0 * cycle, phantoms_every=3)

    estimates, alerts = replay(approach(), events, until_s=3600.0)

    phantoms_per_cycle = 3
    assert max(e.queue_veh for e in estimates) <= phantoms_per_cycle
    # At the end of every quiet spell the approach is seen empty and the count starts afresh.
    ends_of_quiet = [e for e in estimates if seconds_of(e) % 300.0 == 295.0]
    assert ends_of_quiet
    assert all(e.queue_veh == 0.0 for e in ends_of_quiet)
    assert alerts == []


def drifting_flow(plates: bool) -> list[QueueEvent]:
    """Continuous flow, never empty, with one phantom detection per 10 vehicles."""
    events: list[QueueEvent] = []
    for k in range(300):
        t = 12.0 * k
        plate = f"v{k}" if plates else None
        events.append(arrival(t, plate=plate))
        events.append(departure(t + TAU_S + 8.0, service_s=8.0, plate=plate))
        if k % 10 == 5:
            events.append(arrival(t + 3.0))
    return events


def test_plate_matches_correct_a_drifting_count_without_quiet_spells() -> None:
    corrected, _ = replay(approach(), drifting_flow(plates=True), until_s=3600.0)
    drifting, _ = replay(approach(), drifting_flow(plates=False), until_s=3600.0)

    assert drifting[-1].queue_veh >= 25.0
    assert max(e.queue_veh for e in corrected[-200:]) <= 1.0
    assert all(e.wait_s == 0.0 for e in corrected)


def test_double_counts_are_forgotten_when_every_lane_stands_free_without_plates() -> None:
    # Never 60 s without a departure, no plates; one phantom per 10 vehicles. Every 20 s a
    # manual and an ETC vehicle arrive, each lane stands free between its vehicles.
    lanes: Lanes = (("01", "MTC"), ("02", "ETC"))
    events: list[QueueEvent] = []
    for k in range(180):
        t = 20.0 * k
        events.append(arrival(t, count=2))
        events.append(departure(t + TAU_S + SERVICE_S, "01", service_s=SERVICE_S))
        events.append(departure(t + TAU_S + 3.0, "02", service_s=3.0, payment="ETC"))
        if k % 5 == 2:
            events.append(arrival(t + 7.0))

    estimates, alerts = replay(approach(lanes), events, until_s=3600.0)

    # 36 phantoms over the hour; each is forgotten once both lanes have been seen free.
    assert max(e.queue_veh for e in estimates) <= 1.0
    # Until a phantom is forgotten, the vehicles after it are paired with earlier detections.
    assert sum(e.wait_s for e in estimates[-360:]) / 360 < 3.0
    assert alerts == []


def test_unplated_double_counts_beyond_the_unread_share_are_forgotten() -> None:
    # Two manual lanes, each serving back to back (never free), nobody waiting; 9 in 10
    # plates read, and a phantom without a plate every 20 vehicles.
    lanes: Lanes = (("01", "MTC"), ("02", "MTC"))
    events: list[QueueEvent] = []
    for k in range(700):
        t = 5.0 * k
        plate = f"p{k}" if k % 10 else None
        events.append(arrival(t, plate=plate))
        events.append(departure(t + TAU_S + SERVICE_S, f"0{1 + k % 2}", plate=f"p{k}"))
        if k % 20 == 7:
            events.append(arrival(t + 1.0))

    estimates, alerts = replay(approach(lanes), by_time(events), until_s=3500.0)

    # Two or more unplated vehicles waiting while no plated one does is a 1 % chance at this
    # read rate: beyond that they are phantoms. (Ghost ages alone held two 60 % of the time.)
    settled = [e for e in estimates if seconds_of(e) >= 300.0]
    assert sum(1 for e in settled if e.queue_veh > 1.0) / len(settled) < 0.2
    assert alerts == []


def test_a_silent_lane_is_not_taken_for_a_free_one() -> None:
    # The lane's barrier sticks after two vehicles: those behind are trapped, not phantoms.
    events: list[QueueEvent] = [arrival(0.0), arrival(40.0)]
    events += [departure(TAU_S + SERVICE_S), departure(40.0 + TAU_S + SERVICE_S)]
    events += [arrival(60.0 + 5.0 * k) for k in range(6)]

    # Short of the silence that would say the approach is empty (SPEC §4.1 re-anchoring).
    estimates, _ = replay(approach(), events, until_s=150.0)

    assert estimates[-1].queue_veh == 5.0


def test_a_missed_detection_is_reanchored_at_once() -> None:
    # The detector misses the second vehicle; its departure must not drive the queue negative.
    events: list[QueueEvent] = [arrival(0.0), arrival(5.0, count=2)]
    events += [departure(TAU_S + SERVICE_S * (k + 1)) for k in range(4)]
    events += [arrival(100.0, count=3)]

    estimates, _ = replay(approach(), events, until_s=130.0)

    assert all(e.queue_veh >= 0.0 for e in estimates)
    assert estimates[-1].queue_veh == 2.0


def test_free_flow_time_is_learned_from_plate_matches_at_low_flow() -> None:
    events: list[QueueEvent] = []
    for k in range(20):
        t = 90.0 * k
        events.append(arrival(t, plate=f"v{k}"))
        events.append(departure(t + 22.0 + 3.0, service_s=3.0, plate=f"v{k}", payment="ETC"))
    estimator = ApproachEstimator(approach(lanes=(("01", "ETC"),), free_flow_s=None))
    for event in sorted(events, key=lambda e: e.ts):
        estimator.observe(event)
    estimator.advance(at(1800.0))

    assert estimator.tau_s == pytest.approx(22.0)


def test_free_flow_time_is_learned_from_isolated_vehicles_without_plates() -> None:
    events: list[QueueEvent] = []
    for k in range(20):
        t = 300.0 * k
        events.append(arrival(t))
        events.append(departure(t + 18.0 + 3.0, service_s=3.0, payment="ETC"))
    estimator = ApproachEstimator(approach(lanes=(("01", "ETC"),), free_flow_s=None))
    for event in sorted(events, key=lambda e: e.ts):
        estimator.observe(event)
    estimator.advance(at(6000.0))

    assert estimator.tau_s == pytest.approx(18.0)


def test_a_dead_detector_falls_back_to_the_headway_method() -> None:
    events: list[QueueEvent] = [arrival(0.0)]
    events += [departure(20.0 * k + 25.0) for k in range(60)]

    estimates, _ = replay(approach(), events, until_s=1200.0)

    assert estimates[10].method == "input_output"
    assert estimates[-1].method == "headway"
    assert all(e.queue_veh >= 0.0 for e in estimates)


def overtaking(plates: bool) -> list[QueueEvent]:
    """A manual queue that ETC vehicles overtake: departures leave in another order."""
    events: list[QueueEvent] = []
    for k in range(12):
        plate = f"m{k}" if plates else None
        events.append(arrival(0.0, plate=plate))
        events.append(departure(TAU_S + 14.0 * (k + 1), lane="01", service_s=14.0, plate=plate))
    for k in range(20):
        plate = f"e{k}" if plates else None
        events.append(arrival(2.0 + 8.0 * k, plate=plate))
        events.append(departure(2.0 + 8.0 * k + TAU_S + 3.0, lane="02", service_s=3.0, plate=plate))
    return events


def overtaken_queue(t_s: float) -> int:
    """The true queue of `overtaking`: 12 manual vehicles due at τ, one served per 14 s."""
    return 0 if t_s < TAU_S else max(11 - math.floor((t_s - TAU_S) / 14.0), 0)


def test_overtaking_at_etc_lanes_does_not_shift_the_count_by_plate_matches() -> None:
    # Matched by rank, the ETC vehicles' plates would move the count by the number of them
    # that overtook the manual queue. Plates only tell which vehicles waited (none of the
    # ETC ones; paired in order without plates, they seem to have), which moves the count
    # by a vehicle in service at most.
    lanes: Lanes = (("01", "MTC"), ("02", "ETC"))
    with_plates, _ = replay(approach(lanes=lanes), overtaking(plates=True), until_s=250.0)
    without, _ = replay(approach(lanes=lanes), overtaking(plates=False), until_s=250.0)

    for plated, unplated in zip(with_plates, without, strict=True):
        truth = overtaken_queue((plated.ts - at(0.0)) / 1000)
        assert abs(plated.queue_veh - truth) <= 1.0
        assert abs(unplated.queue_veh - truth) <= 1.5


def test_idle_etc_lanes_beside_a_manual_queue_do_not_count_as_serving() -> None:
    lanes: Lanes = (("01", "MTC"), ("02", "ETC"), ("03", "ETC"), ("04", "ETC"))
    events: list[QueueEvent] = [arrival(0.0, count=10)]
    events += [departure(TAU_S + 14.0 * (k + 1), service_s=14.0) for k in range(10)]

    estimates, _ = replay(approach(lanes=lanes), events, until_s=200.0)

    # At 40 s one vehicle has left, one is at the manual barrier and eight wait; the ETC lanes
    # have no one to serve, which shows once they have been silent for two ETC service times.
    at_40_s = next(e for e in estimates if seconds_of(e) == 40.0)
    assert at_40_s.queue_veh == 8.0


def manual_queue_beside_light_etc() -> tuple[list[QueueEvent], list[float], list[float]]:
    """20 manual vehicles at once, each moving up 4 s after the one before left, and an ETC
    vehicle every 7 s that never waits: the events and the manual service starts and ends."""
    events: list[QueueEvent] = [arrival(0.0, plate=f"mtc{k}") for k in range(20)]
    starts = [TAU_S + 18.0 * k for k in range(20)]
    events += [
        departure(start + 14.0, service_s=14.0, plate=f"mtc{k}") for k, start in enumerate(starts)
    ]
    # Every 7 s: out of step with the 5 s outputs, so that they sample the lane fairly.
    for j in range(45):
        plate = f"etc{j}"
        events.append(arrival(1.0 + 7.0 * j, plate=plate))
        events.append(departure(1.0 + 7.0 * j + TAU_S + 3.0, "02", 3.0, plate=plate, payment="ETC"))
    return events, starts, [s + 14.0 for s in starts]


def test_a_vehicle_moving_up_is_queued_and_a_light_lane_serves_its_share() -> None:
    # SPEC §4.1: queued means due but not yet in service. Behind a manual barrier the next
    # vehicle needs seconds to pull up, and the ETC lane beside it is mostly empty: counting
    # one vehicle in service per lane would put the queue a vehicle or more too low.
    lanes: Lanes = (("01", "MTC"), ("02", "ETC"))
    events, starts, _ = manual_queue_beside_light_etc()

    estimates, _ = replay(approach(lanes=lanes), events, until_s=320.0)

    errors = []
    for e in estimates:
        t = seconds_of(e)
        if 80.0 <= t <= 300.0:
            truth = 20 - sum(1 for start in starts if start <= t)
            errors.append(e.queue_veh - truth)
    # An output is an expectation (of the lanes in service, not which); on average it is
    # the truth, and at any time within a lane of it.
    assert len(errors) > 40
    assert abs(sum(errors) / len(errors)) <= 0.25
    assert max(abs(x) for x in errors) <= 1.5


def test_the_queue_keeps_growing_behind_a_spilled_back_detector() -> None:
    # Demand of one vehicle per 5 s on a lane serving one per 10 s; once the queue reaches the
    # 30 m detector, it counts only what the barrier discharges.
    events: list[QueueEvent] = [arrival(5.0 * k) for k in range(24)]
    events += [arrival(120.0 + 10.0 * k) for k in range(30)]
    events += [departure(TAU_S + 10.0 * (k + 1)) for k in range(60)]

    estimates, _ = replay(approach(distance_m=30.0, queue_lanes=1), events, until_s=400.0)

    spilled = [e for e in estimates if e.spillback]
    assert spilled
    floor = 30.0 / 7.5
    assert max(e.queue_veh for e in spilled) >= floor + 3
    assert all(e.queue_m >= 30.0 for e in spilled)


def spilled_then_discharging(
    discharge_until_s: float, detector_period_s: float, surge_s: float = 120.0
) -> list[QueueEvent]:
    """A surge that spills past a 30 m detector, then the detector counts the discharge."""
    events: list[QueueEvent] = [arrival(5.0 * k) for k in range(round(surge_s / 5.0))]
    t = surge_s
    while t < discharge_until_s:
        events.append(arrival(t))
        t += detector_period_s
    served = len(events)
    events += [departure(TAU_S + 10.0 * (k + 1)) for k in range(served)]
    return events


def test_a_spilled_queue_keeps_growing_behind_the_detector_ever_more_slowly() -> None:
    # The detector counts exactly the discharge for twenty minutes: what stands behind it is
    # unknown, and the demand seen before the spillback is assumed to go on with a chance
    # that falls as R / (R + t): growth slows down but never stops while nothing says so.
    events = spilled_then_discharging(1_500.0, detector_period_s=10.0)

    estimates, _ = replay(approach(distance_m=30.0, queue_lanes=1), events, until_s=1_400.0)

    queue = {seconds_of(e): e.queue_veh for e in estimates if e.spillback}
    assert queue[1_400.0] > queue[800.0] > queue[300.0]
    assert queue[1_400.0] - queue[800.0] < queue[800.0] - queue[200.0]


def test_the_spillback_holds_until_the_detector_sees_the_tail_go_by() -> None:
    # After the spillback the detector counts a little less than the discharge (stop-and-go),
    # so the counted queue thins out below the detector; the queue behind it is still there.
    events = spilled_then_discharging(900.0, detector_period_s=12.0, surge_s=60.0)

    estimates, _ = replay(approach(distance_m=30.0, queue_lanes=1), events, until_s=2_400.0)

    by_time = {seconds_of(e): e for e in estimates}
    assert by_time[800.0].spillback
    assert by_time[800.0].queue_veh >= 30.0 / 7.5
    # Then the detector falls silent while the barrier keeps serving: the tail has passed.
    assert not estimates[-1].spillback
    assert estimates[-1].queue_veh == 0.0


def test_the_alert_says_how_much_of_the_queue_is_beyond_the_detector() -> None:
    # A platoon fills the 30 m stretch at once; from then on the detector counts the discharge.
    events: list[QueueEvent] = [arrival(0.0), arrival(1.0, count=8)]
    events += [arrival(10.0 * k) for k in range(1, 40)]
    events += [departure(TAU_S + 10.0 * (k + 1)) for k in range(48)]

    estimates, alerts = replay(approach(distance_m=30.0, queue_lanes=1), events, until_s=400.0)

    fired = alerts[0]
    raised_at = next(e for e in estimates if e.ts == fired.evidence["ts"])
    hidden = fired.evidence["hidden_queue_veh"]
    assert isinstance(hidden, float)
    assert 0 < hidden < raised_at.queue_veh


def test_a_stopped_queue_stays_counted_after_its_arrivals_are_older_than_the_curves_keep() -> None:
    # 81 vehicles arrive over five minutes and the lane serves two of them, then stops. The
    # count curves keep only the last 10 minutes of detections; 18 minutes after the last
    # one, the lane has still not had the time to serve the queue, so it is not "seen
    # empty", even when a new vehicle has just crossed the detector.
    events: list[QueueEvent] = [arrival(float(k)) for k in range(60)]
    events += [departure(45.0, service_s=30.0), departure(75.0, service_s=30.0)]
    events += [arrival(100.0 + 10.0 * k) for k in range(21)]
    events.append(arrival(1_400.0))

    estimates, _ = replay(approach(distance_m=1_000.0), events, until_s=1_410.0)

    held = [e for e in estimates if seconds_of(e) >= 300.0]
    assert held
    assert all(e.queue_veh >= 75 for e in held)


def test_an_hour_of_a_busy_approach_keeps_ten_minutes_of_counts() -> None:
    # Three vehicles a second, all plated and served at once: the count curves are read at
    # most 10 minutes back here (8 τ is 2 minutes), so an hour of them is not kept. At 4
    # bytes a unit, three curves of an hour would take 127 KiB on their own; the half hour
    # of plate reads kept in detection order (16 bytes each) is most of what remains.
    events: list[QueueEvent] = []
    for k in range(3 * 3600):
        t = k / 3.0
        plate, lane = f"v{k}", f"0{k % 3 + 1}"
        events.append(arrival(t, plate=plate))
        events.append(departure(t + TAU_S + 2.0, lane=lane, service_s=2.0, plate=plate))
    lanes: Lanes = (("01", "ETC"), ("02", "ETC"), ("03", "MTC"))
    tracemalloc.start()
    try:
        estimator = ApproachEstimator(approach(lanes))
        before = tracemalloc.get_traced_memory()[0]
        for event in by_time(events):
            estimator.observe(event)
            estimator.advance(event.ts)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 150 * 1024
