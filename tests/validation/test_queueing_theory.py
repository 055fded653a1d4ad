"""The queue estimator reproduces queueing theory on simulated M/M/1 and M/D/c lanes."""

from __future__ import annotations

import pytest

from validation.queueing_theory import Case, evaluate, standard_cases

# Enough vehicles for the time average to settle within a few percent of the analytic value.
SLOW_VEHICLES = 200_000

FAST_CASES = [
    Case("M/M/1", 0.7, 1, 10.0, 40_000, seed=11),
    Case("M/D/c", 0.7, 3, 14.0, 20_000, seed=12),
]


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: c.name)
def test_estimator_matches_theory_and_the_sample_path(case: Case) -> None:
    result = evaluate(case)

    # On the simulated path itself the curves recover the queue and delays almost exactly.
    assert result.lq_estimate == pytest.approx(result.lq_truth, rel=0.02)
    assert result.wq_estimate == pytest.approx(result.wq_truth, rel=0.02)
    assert result.lq_estimate == pytest.approx(result.lq_theory, rel=0.10)
    assert result.wq_estimate == pytest.approx(result.wq_theory, rel=0.10)


@pytest.mark.slow
@pytest.mark.parametrize("case", standard_cases(SLOW_VEHICLES), ids=lambda c: c.name)
def test_estimator_matches_theory_at_every_utilisation(case: Case) -> None:
    result = evaluate(case)

    assert result.lq_estimate == pytest.approx(result.lq_truth, rel=0.02)
    assert result.lq_estimate == pytest.approx(result.lq_theory, rel=0.10)
    assert result.wq_estimate == pytest.approx(result.wq_theory, rel=0.10)
