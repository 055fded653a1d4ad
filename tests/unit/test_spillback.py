"""SPEC §4.1 spillback: the queue behind a detector that sits inside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from detectors.curves import CumulativeCurve
from detectors.spillback import SPILLBACK_CLEAR_RATIO, Spillback

STEP_MS = 5_000
REACH_VEH = 24.0  # vehicles between the detector and the barriers
LANES = 4


@dataclass
class Approach:
    """An approach's two curves, fed at steady rates, and its spillback state."""

    crossed: CumulativeCurve = field(default_factory=lambda: CumulativeCurve(3_600.0))
    served: CumulativeCurve = field(default_factory=lambda: CumulativeCurve(3_600.0))
    spill: Spillback = field(default_factory=lambda: Spillback(STEP_MS))
    now_ms: int = 0

    def run(
        self, seconds: int, crossed_per_s: float, served_per_s: float, queue_veh: float
    ) -> None:
        """Vehicles cross and leave at these rates; the counted queue is `queue_veh`."""
        for _ in range(seconds * 1000 // STEP_MS):
            for curve, per_s in ((self.crossed, crossed_per_s), (self.served, served_per_s)):
                due = round(per_s * (self.now_ms + STEP_MS) / 1000) - round(
                    per_s * self.now_ms / 1000
                )
                if due:
                    curve.add(self.now_ms + STEP_MS, due)
            self.now_ms += STEP_MS
            self.spill.update(
                self.now_ms, queue_veh, REACH_VEH, LANES, self.crossed, self.served, 0
            )


def surged() -> Approach:
    """Three minutes of 1.5 veh/s against 1 veh/s served, until the queue reaches the detector."""
    approach = Approach()
    approach.run(120, 1.0, 1.0, queue_veh=1.0)
    approach.run(180, 1.5, 1.0, queue_veh=REACH_VEH - 1)
    return approach


def test_no_spillback_while_the_counted_queue_stands_short_of_the_detector() -> None:
    approach = surged()
    assert not approach.spill.active
    assert approach.spill.hidden_veh == 0.0


def test_the_queue_grows_unseen_while_the_detector_counts_only_the_discharge() -> None:
    approach = surged()
    hidden = []
    for _ in range(6):
        # Inside the queue the detector passes what the barriers serve, 1 veh/s.
        approach.run(60, 1.0, 1.0, queue_veh=REACH_VEH)
        hidden.append(approach.spill.hidden_veh)
    assert approach.spill.active
    growth = [b - a for a, b in pairwise(hidden)]
    assert hidden[0] > 0
    assert all(g > 0 for g in growth)
    # Surges end at an unknown time: the longer this one lasts, the less is added per minute
    # (once the minute the detector's flow is judged over holds the discharge alone).
    assert growth == sorted(growth, reverse=True)
    # Never more than the demand measured before the spillback would have added.
    assert hidden[-1] < 6 * 60 * 0.5


def test_a_detector_that_still_sees_more_than_the_discharge_hides_nothing() -> None:
    approach = surged()
    approach.run(120, 1.5, 1.0, queue_veh=REACH_VEH + 10)
    assert approach.spill.active
    assert approach.spill.hidden_veh == 0.0


def test_the_hidden_part_drains_once_the_detector_sees_the_tail_go_by() -> None:
    approach = surged()
    approach.run(300, 1.0, 1.0, queue_veh=REACH_VEH)
    peak = approach.spill.hidden_veh
    # Behind the tail the detector counts the low demand again, well under the discharge.
    approach.run(30, 0.3, 1.0, queue_veh=REACH_VEH)
    assert 0 < approach.spill.hidden_veh < peak
    approach.run(300, 0.3, 1.0, queue_veh=REACH_VEH)
    assert approach.spill.hidden_veh == 0.0
    assert approach.spill.active  # the counted queue still reaches the detector


def test_the_spillback_ends_when_the_counted_queue_is_clearly_back_inside() -> None:
    approach = surged()
    approach.run(120, 1.0, 1.0, queue_veh=REACH_VEH)
    approach.run(300, 0.3, 1.0, queue_veh=REACH_VEH)
    approach.run(10, 0.3, 1.0, queue_veh=SPILLBACK_CLEAR_RATIO * REACH_VEH + 1)
    assert approach.spill.active  # no flapping just under the detector
    approach.run(10, 0.3, 1.0, queue_veh=SPILLBACK_CLEAR_RATIO * REACH_VEH - 1)
    assert not approach.spill.active
    assert approach.spill.hidden_veh == 0.0


def test_a_silent_detector_and_an_empty_count_leave_no_extrapolated_queue() -> None:
    approach = surged()
    approach.run(120, 1.0, 1.0, queue_veh=REACH_VEH)
    assert approach.spill.hidden_veh > 0
    approach.run(60, 0.0, 0.0, queue_veh=0.5)
    assert approach.spill.hidden_veh == 0.0
