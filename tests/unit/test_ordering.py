"""Event-time ordering of one plaza's streams, whatever order the topics deliver in."""

from __future__ import annotations

import random

from detectors.ordering import EventTimeMerger
from tollmon.events import ApproachDetection, Event, LaneStatus, LaneTransaction


def detection(ts: int, n: int = 0) -> ApproachDetection:
    return ApproachDetection(
        event_id=f"d{ts}-{n}", ts=ts, plaza_id="P", direction="entry", detector_id="D"
    )


def departure(ts: int) -> LaneTransaction:
    return LaneTransaction(
        event_id=f"t{ts}",
        ts=ts,
        plaza_id="P",
        lane_id="01",
        direction="entry",
        payment="ETC",
        result="OK",
        vehicle_class="K1",
        axles=2,
        pass_id=f"p{ts}",
        plate_hash="h",
    )


def status(ts: int) -> LaneStatus:
    return LaneStatus(
        event_id=f"s{ts}", ts=ts, plaza_id="P", lane_id="01", direction="entry", state="CLOSED"
    )


BOTH = (ApproachDetection, LaneTransaction)


def test_events_wait_until_every_expected_feed_has_passed_them() -> None:
    merger = EventTimeMerger(idle_after_s=10, expected=BOTH)
    assert merger.push(departure(5_000), now_s=0) == []
    assert merger.push(departure(9_000), now_s=0) == []
    # Detections are behind: nothing after their watermark is released.
    released = merger.push(detection(6_000), now_s=0)
    assert [e.ts for e in released] == [5_000]
    released = merger.push(detection(12_000), now_s=0)
    assert [e.ts for e in released] == [6_000]
    released = merger.push(departure(13_000), now_s=0)
    assert [e.ts for e in released] == [9_000]


def test_any_interleaving_of_in_order_feeds_gives_the_same_order() -> None:
    detections = [detection(ts) for ts in range(0, 60_000, 700)]
    departures = [departure(ts) for ts in range(300, 60_000, 900)]
    reference: list[Event] | None = None
    for seed in range(20):
        rng = random.Random(seed)
        d, t = list(detections), list(departures)
        merger = EventTimeMerger(idle_after_s=10, max_hold_s=1e9, expected=BOTH)
        out: list[Event] = []
        while d or t:
            source = d if (d and (not t or rng.random() < 0.5)) else t
            out.extend(merger.push(source.pop(0), now_s=0))
        out.extend(merger.flush())
        assert [e.ts for e in out] == sorted(e.ts for e in out)
        reference = reference or out
        assert out == reference


def test_an_idle_feed_is_no_longer_waited_for() -> None:
    merger = EventTimeMerger(idle_after_s=10, max_hold_s=1e9, expected=BOTH)
    merger.push(detection(1_000), now_s=0)
    assert merger.push(departure(50_000), now_s=5) == []
    # The detector feed stays silent for more than 10 s of processing time.
    released = merger.push(departure(60_000), now_s=11)
    assert [e.ts for e in released] == [1_000, 50_000]


def test_an_expected_feed_that_never_speaks_is_idle_after_the_allowance() -> None:
    merger = EventTimeMerger(idle_after_s=10, max_hold_s=1e9, expected=BOTH)
    assert merger.push(departure(1_000), now_s=0) == []
    assert [e.ts for e in merger.push(departure(2_000), now_s=11)] == [1_000]


def test_a_lagging_feed_holds_its_plaza_back_only_for_the_maximum_hold() -> None:
    merger = EventTimeMerger(idle_after_s=1_000, max_hold_s=30, expected=BOTH)
    merger.push(detection(0), now_s=0)
    assert merger.push(departure(45_000), now_s=0) == []
    # The detector keeps delivering, but with a clock far behind.
    released = merger.push(detection(1_000), now_s=20)
    released += merger.push(detection(2_000), now_s=31)
    assert [e.ts for e in released] == [0, 1_000, 2_000]


def test_catching_up_a_backlog_never_forces_events_out_of_order() -> None:
    # Hours of event time read within seconds: the hold is in processing time.
    merger = EventTimeMerger(idle_after_s=10, max_hold_s=30, expected=BOTH)
    out: list[Event] = []
    for ts in range(0, 3_600_000, 1_000):
        out += merger.push(departure(ts), now_s=ts / 1_000_000)
    for ts in range(500, 3_600_000, 1_000):
        out += merger.push(detection(ts), now_s=3.6 + ts / 1_000_000)
    out += merger.flush()
    assert merger.late_events == 0
    assert [e.ts for e in out] == sorted(e.ts for e in out)


def test_sparse_feeds_do_not_hold_the_plaza_back_but_are_ordered() -> None:
    merger = EventTimeMerger(expected=BOTH)
    merger.push(status(2_000), now_s=0)
    merger.push(detection(1_000), now_s=0)
    assert merger.push(departure(3_000), now_s=0) == []
    released = merger.push(detection(4_000), now_s=0)
    assert [type(e).__name__ for e in released] == ["ApproachDetection", "LaneStatus"]


def test_an_event_behind_what_was_released_is_counted_late() -> None:
    merger = EventTimeMerger()
    merger.push(detection(10_000), now_s=0)
    merger.push(departure(20_000), now_s=0)
    merger.push(detection(30_000), now_s=0)
    merger.push(departure(1_000), now_s=0)
    assert merger.late_events == 1


def test_feeds_that_fell_silent_together_are_waited_for_again_when_one_resumes() -> None:
    # A broker outage silences every feed at once; afterwards the topics resume
    # seconds apart. The first to resume must not find its partner idle.
    merger = EventTimeMerger(idle_after_s=10, max_hold_s=1e9, expected=BOTH)
    merger.push(detection(1_000), now_s=0)
    merger.push(departure(1_500), now_s=0)
    assert [e.ts for e in merger.release(now_s=20)] == [1_000, 1_500]
    assert merger.push(departure(9_000), now_s=25) == []
    released = merger.push(detection(8_000), now_s=28)
    released += merger.push(detection(10_000), now_s=28)
    released += merger.push(departure(11_000), now_s=28)
    assert [e.ts for e in released] == [8_000, 9_000]
    assert merger.late_events == 0


def test_a_feed_that_died_before_the_silence_stays_idle_when_its_plaza_resumes() -> None:
    merger = EventTimeMerger(idle_after_s=10, max_hold_s=1e9, expected=BOTH)
    merger.push(departure(0), now_s=0)
    merger.push(detection(1_000), now_s=1)  # the detector's last word
    for second in range(5, 45, 5):  # departures go on without it
        merger.push(departure(second * 1_000), now_s=second)
    # The plaza is quiet for 20 s; the detector feed had already been dead for 39.
    assert [e.ts for e in merger.push(departure(70_000), now_s=60)] == [40_000]
    assert merger.late_events == 0


def test_a_feed_shuffled_within_its_disorder_bound_comes_out_in_order() -> None:
    rng = random.Random(4)
    detections = [detection(ts) for ts in range(0, 120_000, 700)]
    departures = [departure(ts) for ts in range(300, 120_000, 900)]
    # Every event moved by up to 5 s, within its own feed too.
    arrivals = sorted(detections + departures, key=lambda e: e.ts + rng.uniform(0, 5_000))
    merger = EventTimeMerger(idle_after_s=10, max_hold_s=1e9, expected=BOTH, disorder_s=5)
    out = [e for event in arrivals for e in merger.push(event, now_s=0)] + merger.flush()
    assert merger.late_events == 0
    assert [e.ts for e in out] == sorted(e.ts for e in arrivals)


def test_without_a_disorder_bound_a_shuffled_feed_is_fed_late() -> None:
    rng = random.Random(4)
    detections = [detection(ts) for ts in range(0, 120_000, 700)]
    departures = [departure(ts) for ts in range(300, 120_000, 900)]
    arrivals = sorted(detections + departures, key=lambda e: e.ts + rng.uniform(0, 5_000))
    merger = EventTimeMerger(idle_after_s=10, max_hold_s=1e9, expected=BOTH)
    for event in arrivals:
        merger.push(event, now_s=0)
    assert merger.late_events > 0
