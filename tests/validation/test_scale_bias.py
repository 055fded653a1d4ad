"""SPEC §7 scale-bias bar on the synthetic network: a short CI case and the full run."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.scale_bias import ScaleBiasConfig
from validation.scale_bias import Injection, Scenario, main, run


def test_a_3pct_biased_scale_among_50_is_named_within_300_pairs_with_its_side() -> None:
    scenario = Scenario(
        seed=11,
        days=2.0,
        pairs_per_day=5000,
        injections=(
            Injection("entry", 3, 0.03, start_day=0.7),
            Injection("exit", 17, -0.03, start_day=0.7),
        ),
    )
    result = run(scenario, ScaleBiasConfig())
    for r in result.injections:
        assert r.detected, r
        assert r.delay_pairs is not None
        assert r.delay_pairs <= 300
        assert r.named_side == r.injection.station
    assert result.false_alerts == 0


@pytest.mark.slow
def test_full_validation_meets_the_targets(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "scale_bias.md").exists()
