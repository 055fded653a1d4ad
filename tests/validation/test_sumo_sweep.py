"""SPEC §7 queue bars on SUMO plazas and demand other than the report's (validation/sumo/sweep.py).

Where nothing queues upstream of the detector the bars hold on every plaza; with a queue
spilled back past it, the vehicles behind it are beyond any count (see test_sumo.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sumo", reason="eclipse-sumo is not installed: pip install -e '.[validation]'")

from validation.sumo.score import Targets
from validation.sumo.sweep import CASES, Case, CaseRun, run_case

TARGETS = Targets()
BY_NAME = {c.name: c for c in CASES}


def test_congestion_without_spillback_meets_every_bar(tmp_path: Path) -> None:
    run = run_case(BY_NAME["moderate"], 5, tmp_path)

    assert run.evaluation.result("input_output").hidden.hidden_outputs < 10
    for variant in ("input_output", "no_plates"):
        scores = run.evaluation.result(variant).scores
        assert scores.meets(TARGETS), (variant, scores.misses(TARGETS))


def test_a_small_plaza_counts_its_visible_queue_within_a_vehicle(tmp_path: Path) -> None:
    run = run_case(BY_NAME["small"], 5, tmp_path)

    for result in run.evaluation.results:
        assert result.hidden.visible_mae_veh <= TARGETS.queue_mae_veh, result.variant.name
        assert result.scores.false_alerts == 0


@pytest.fixture(scope="module")
def every_run(tmp_path_factory: pytest.TempPathFactory) -> list[CaseRun]:
    work = tmp_path_factory.mktemp("sweep")
    return [run_case(case, seed, work) for case in CASES for seed in (5, 13)]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_plaza_counts_its_visible_queue_within_a_vehicle(
    every_run: list[CaseRun], case: Case
) -> None:
    for run in (r for r in every_run if r.case is case):
        for result in run.evaluation.results:
            assert result.hidden.visible_mae_veh <= TARGETS.queue_mae_veh, (
                run.seed,
                result.variant.name,
            )
            assert result.scores.false_alerts + result.scores.free_flow_alerts == 0
