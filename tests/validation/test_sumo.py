"""SPEC §7 queue bars against an Eclipse SUMO toll plaza: a short CI case and the full run.

The short scenario (about 10 s) has ETC and manual lanes, ETC failures, a failing antenna and
a surge whose queue spills back past the approach detector. Bars the estimator misses today
are strict xfails that name the cause, so that a fix shows up as an unexpected pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sumo", reason="eclipse-sumo is not installed: pip install -e '.[validation]'")

from validation.sumo.evaluate import FULL, SHORT, Evaluation, evaluate
from validation.sumo.score import Targets

TARGETS = Targets()

SPILLBACK_HIDDEN = (
    "once the queue passes the approach detector, the vehicles queued upstream of it are not"
    " counted (the detector inside a queue passes the discharge, whatever stands behind it);"
    " the estimator extrapolates the pre-spillback demand with a surge-survival prior. Measured"
    " (docs/validation/sumo.md): short queue MAE 2.87 veh = 0.55 over the 313 outputs with"
    " nothing hidden, 11.22 over the 87 with on average 17 vehicles upstream of the detector."
    " A second detector farther upstream counts them (the upstream_loop variants below)"
)
SPILLBACK_HIDDEN_FULL = (
    "as above on the 75 min run: queue MAE 5.05 veh (0.41 with nothing hidden, 21.6 with on"
    " average 28 vehicles upstream of the detector), wait MAE 12.9 s"
)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    return evaluate(SHORT, tmp_path_factory.mktemp("sumo"))


def test_the_short_scenario_spills_back_past_the_detector(short_run: Evaluation) -> None:
    sim = short_run.simulation
    assert sim.teleports == 0
    assert len(sim.records) == sim.generated
    ours = short_run.result("input_output").scores
    detector_timed = short_run.result("input_output").scores_detector_timed
    # The SPEC truth holds more vehicles than can stand between the detector and the barriers.
    assert ours.max_true_queue_veh > detector_timed.max_true_queue_veh + 20


@pytest.mark.parametrize("variant", ["input_output", "no_plates", "headway"])
def test_no_congestion_alert_without_true_congestion(short_run: Evaluation, variant: str) -> None:
    scores = short_run.result(variant).scores
    assert scores.free_flow_alerts == 0
    assert scores.false_alerts == 0


def test_wait_is_within_10_s_of_the_truth(short_run: Evaluation) -> None:
    assert short_run.result("input_output").scores.wait_mae_s <= TARGETS.wait_mae_s


@pytest.mark.xfail(strict=True, reason=SPILLBACK_HIDDEN)
def test_queue_is_within_1_vehicle_of_the_truth(short_run: Evaluation) -> None:
    assert short_run.result("input_output").scores.queue_mae_veh <= TARGETS.queue_mae_veh


def test_congestion_alert_starts_within_30_s_of_the_true_onset(short_run: Evaluation) -> None:
    delay = short_run.result("input_output").scores.onset_delay_s
    assert delay is not None
    assert abs(delay) <= TARGETS.onset_delay_s


def test_detector_counts_alone_raise_the_alert_within_30_s(short_run: Evaluation) -> None:
    delay = short_run.result("no_plates").scores.onset_delay_s
    assert delay is not None
    assert abs(delay) <= TARGETS.onset_delay_s


def test_plate_matches_do_not_make_the_visible_queue_worse(short_run: Evaluation) -> None:
    # Without the spillback model (approach lanes unset) both see the detector's queue alone.
    with_plates = short_run.result("open_lanes").scores_detector_timed.queue_mae_veh
    without = short_run.result("no_plates").scores_detector_timed.queue_mae_veh
    assert with_plates <= without + 0.25


def test_the_spillback_is_flagged_and_part_of_the_hidden_queue_recovered(
    short_run: Evaluation,
) -> None:
    configured = short_run.result("input_output").scores
    unconfigured = short_run.result("open_lanes").scores
    assert configured.spillback_outputs > 0
    assert configured.queue_mae_veh < unconfigured.queue_mae_veh


def test_the_queue_the_detector_has_counted_is_within_1_vehicle(short_run: Evaluation) -> None:
    # Where every queued vehicle has crossed the detector, the bar holds; the misses above are
    # the vehicles queued upstream of it, which no count at the detector includes.
    split = short_run.result("input_output").hidden
    assert split.visible_outputs > split.hidden_outputs > 0
    assert split.visible_mae_veh <= TARGETS.queue_mae_veh


@pytest.mark.parametrize(
    "variant", ["upstream_loop", "upstream_loop_no_plates", "upstream_loop_learned_tau"]
)
def test_a_loop_farther_upstream_meets_every_bar_through_the_spillback(
    short_run: Evaluation, variant: str
) -> None:
    # The queue past the detector is counted by a second loop 500 m farther upstream.
    scores = short_run.result(variant).scores
    assert scores.meets(TARGETS), scores.misses(TARGETS)
    assert scores.spillback_outputs > 0


def test_headway_method_raises_the_surge_without_a_detector(short_run: Evaluation) -> None:
    # No §7 target for the headway method (the bars are for detector approaches), but a
    # saturated plaza must not look calm: move-up between queued vehicles is busy time.
    result = short_run.result("headway")
    assert all(e.method == "headway" for e in result.run.estimates)
    assert result.scores.alerts == 1
    assert max(e.level for e in result.run.estimates) >= 2


@pytest.mark.slow
def test_full_run_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the 'validation' extra) is needed")
    from validation.sumo.run import main

    assert main(["--out", str(tmp_path), "--work", str(tmp_path / "work"), "--seeds"]) == 0
    assert (tmp_path / "sumo.md").exists()
    assert (tmp_path / "sumo_full.png").stat().st_size < 300_000


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    return evaluate(FULL, tmp_path_factory.mktemp("sumo-full"))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["input_output", "no_plates"])
def test_full_run_alerts_within_30_s_of_the_held_onset_and_never_falsely(
    full_run: Evaluation, variant: str
) -> None:
    scores = full_run.result(variant).scores
    assert scores.onset_delay_held_s is not None
    assert abs(scores.onset_delay_held_s) <= TARGETS.onset_delay_s
    assert scores.false_alerts == 0
    assert scores.free_flow_alerts == 0


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=SPILLBACK_HIDDEN_FULL)
def test_full_run_meets_the_queue_and_wait_bars(full_run: Evaluation) -> None:
    scores = full_run.result("input_output").scores
    assert scores.meets(TARGETS), scores.misses(TARGETS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant", ["upstream_loop", "upstream_loop_no_plates", "upstream_loop_learned_tau"]
)
def test_full_run_with_a_loop_farther_upstream_meets_every_bar(
    full_run: Evaluation, variant: str
) -> None:
    scores = full_run.result(variant).scores
    assert scores.meets(TARGETS), scores.misses(TARGETS)
