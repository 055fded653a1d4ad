"""The network scale-bias estimator and its SCALE_BIAS alert (SPEC §4.3)."""

from __future__ import annotations

import asyncio

import msgspec
import numpy as np
import pytest

from detectors.scale_bias import ScaleBiasConfig, ScaleBiasEstimator, ScaleBiasState
from detectors.scales import ScaleInfo
from detectors.weighing import WeighingRecord, WeighPair
from streams.weighing_agents import fit_in_child

PLAZAS = 6
CLASSES = (2.0, 5.0, 10.0)


def network() -> dict[str, ScaleInfo]:
    scales = {}
    for p in range(PLAZAS):
        for station in ("entry", "exit"):
            sid = f"P{p}-{station}"
            scales[sid] = ScaleInfo(sid, f"P{p}", station, "01", CLASSES[p % len(CLASSES)])
    return scales


def feed(
    estimator: ScaleBiasEstimator,
    biases: dict[str, float],
    pairs: int,
    *,
    seed: int = 0,
    load_change_share: float = 0.0,
    start_ts: int = 0,
) -> None:
    """Simulated trips between different plazas with class noise and optional load changes."""
    rng = np.random.default_rng(seed)
    for i in range(pairs):
        a, b = rng.choice(PLAZAS, 2, replace=False)
        readings = []
        load_change = -0.3 if rng.random() < load_change_share else 0.0
        for sid, change in ((f"P{a}-entry", 0.0), (f"P{b}-exit", load_change)):
            scale = estimator.scales[sid]
            error = rng.normal(0.0, scale.mpe_ratio / 2)
            readings.append(round(30_000 * (1 + change) * (1 + biases.get(sid, 0.0)) * (1 + error)))
        estimator.add_observation(
            f"P{a}-entry",
            f"P{b}-exit",
            float(np.log(readings[1] / readings[0])),
            start_ts + i * 1000,
        )


def by_id(estimator: ScaleBiasEstimator) -> dict[str, float]:
    return {e.scale_id: e.bias_ratio for e in estimator.estimate()}


def test_recovers_injected_biases_on_a_small_network() -> None:
    injected = {"P1-entry": 0.04, "P4-exit": -0.03}
    estimator = ScaleBiasEstimator(network(), ScaleBiasConfig(pairs_per_scale=10_000))
    feed(estimator, injected, 3000, load_change_share=0.03)
    for estimate in estimator.estimate():
        truth = injected.get(estimate.scale_id, 0.0)
        assert abs(estimate.bias_ratio - truth) < 3 * estimate.stderr_ratio + 0.002, estimate
        assert estimate.stderr_ratio < 0.004
        assert estimate.pairs > 300


def test_the_median_scale_is_the_anchor() -> None:
    # Only differences are observed: shifting every scale by +2 % must change nothing.
    shifted = dict.fromkeys(network(), 0.02)
    estimator = ScaleBiasEstimator(network())
    feed(estimator, shifted | {"P2-entry": 0.07}, 2000)
    estimates = estimator.estimate()
    assert float(np.median([e.bias_log for e in estimates])) == pytest.approx(0.0, abs=1e-12)
    biases = by_id(estimator)
    assert biases["P2-entry"] == pytest.approx(1.07 / 1.02 - 1, abs=0.006)


def test_gross_load_changes_do_not_bias_the_estimate() -> None:
    estimator = ScaleBiasEstimator(network())
    feed(estimator, {}, 3000, load_change_share=0.08)
    assert max(abs(b) for b in by_id(estimator).values()) < 0.004


def test_an_unbiased_network_raises_nothing() -> None:
    estimator = ScaleBiasEstimator(network())
    alerts = []
    for block in range(30):
        feed(estimator, {}, 100, seed=block, load_change_share=0.03, start_ts=block * 100_000)
        alerts += estimator.evaluate(block * 100_000)
    assert alerts == []


def test_a_biased_scale_is_named_with_its_side_and_resolves_after_repair() -> None:
    estimator = ScaleBiasEstimator(network())
    feed(estimator, {"P3-exit": 0.04}, 1500)
    [alert] = estimator.evaluate(1_500_000)
    assert (alert.kind, alert.subject, alert.plaza_id, alert.status) == (
        "SCALE_BIAS",
        "P3-exit",
        "P3",
        "firing",
    )
    assert alert.evidence["station"] == "exit"
    assert float(alert.evidence["bias_ratio"] or 0) == pytest.approx(0.04, abs=0.01)
    assert estimator.evaluate(1_600_000) == []
    feed(estimator, {}, 3000, seed=1, start_ts=2_000_000)
    [resolved] = estimator.evaluate(5_000_000)
    assert (resolved.alert_id, resolved.status, resolved.ended_at) == (
        alert.alert_id,
        "resolved",
        5_000_000,
    )
    assert estimator.firing() == []


def test_unusable_pairs_are_refused() -> None:
    estimator = ScaleBiasEstimator(network())

    def pair(
        entry_quality: str = "OK",
        exit_axles: int = 5,
        exit_scale: str = "P1-exit",
    ) -> WeighPair:
        return WeighPair(
            pass_id="T",
            entry=WeighingRecord(
                scale_id="P0-entry",
                plaza_id="P0",
                gross_kg=30_000,
                axles=5,
                ts=0,
                quality=entry_quality,
            ),  # type: ignore[arg-type]  # test input
            exit=WeighingRecord(
                scale_id=exit_scale, plaza_id="P1", gross_kg=30_000, axles=exit_axles, ts=1
            ),
        )

    assert estimator.add_pair(pair())
    assert not estimator.add_pair(pair(entry_quality="UNSTABLE"))
    assert not estimator.add_pair(pair(exit_axles=6))
    assert not estimator.add_pair(pair(exit_scale="NOT-CONFIGURED"))


def test_the_window_keeps_the_last_pairs_of_each_scale() -> None:
    estimator = ScaleBiasEstimator(network(), ScaleBiasConfig(pairs_per_scale=50))
    feed(estimator, {}, 5000)
    assert max(e.pairs for e in estimator.estimate()) < 400


def test_state_round_trips_and_continues_identically() -> None:
    estimator = ScaleBiasEstimator(network())
    feed(estimator, {"P0-entry": 0.05}, 1200)
    estimator.evaluate(1_200_000)
    data = msgspec.json.encode(estimator.state())
    restored = ScaleBiasEstimator.from_state(
        msgspec.json.decode(data, type=ScaleBiasState), network()
    )
    assert restored.estimate() == estimator.estimate()
    assert restored.firing() == estimator.firing()


def test_fifty_scales_and_many_pairs_estimate_quickly() -> None:
    rng = np.random.default_rng(3)
    scales = {
        f"S{i}": ScaleInfo(f"S{i}", f"P{i // 2}", "entry" if i % 2 == 0 else "exit", "01", 5.0)
        for i in range(50)
    }
    estimator = ScaleBiasEstimator(scales)
    entries, exits = rng.integers(0, 25, 20_000) * 2, rng.integers(0, 25, 20_000) * 2 + 1
    for i, (e, x) in enumerate(zip(entries, exits, strict=True)):
        estimator.add_observation(f"S{e}", f"S{x}", float(rng.normal(0, 0.02)), i)
    assert len(estimator.estimate()) == 50


def wide_network(scales: int, seed: int = 5) -> ScaleBiasEstimator:
    """Plazas of one entry and one exit scale, 100 pairs per scale between random plazas."""
    rng = np.random.default_rng(seed)
    infos = {
        f"S{i}": ScaleInfo(f"S{i}", f"P{i // 2}", "entry" if i % 2 == 0 else "exit", "01", 5.0)
        for i in range(scales)
    }
    estimator = ScaleBiasEstimator(infos)
    plazas = scales // 2
    for i in range(scales * 50):
        a = int(rng.integers(0, plazas))
        b = (a + int(rng.integers(1, plazas))) % plazas
        estimator.add_observation(f"S{2 * a}", f"S{2 * b + 1}", float(rng.normal(0, 0.02)), i)
    return estimator


def test_the_sampled_variance_of_a_large_network_is_within_ten_percent_of_exact() -> None:
    exact = {e.scale_id: e for e in wide_network(400).estimate()}
    sampled = wide_network(400)
    sampled.config = ScaleBiasConfig(exact_variance_max_scales=100)
    for estimate in sampled.estimate():
        reference = exact[estimate.scale_id]
        assert estimate.bias_log == pytest.approx(reference.bias_log, abs=1e-9)
        assert estimate.stderr_log**2 == pytest.approx(reference.stderr_log**2, rel=0.10)


def test_separate_groups_of_scales_are_each_anchored_at_their_median() -> None:
    scales = network()
    estimator = ScaleBiasEstimator(scales)
    rng = np.random.default_rng(2)
    for i in range(600):
        group = (0, 1, 2) if i % 2 == 0 else (3, 4, 5)
        a, b = rng.choice(group, 2, replace=False)
        estimator.add_observation(f"P{a}-entry", f"P{b}-exit", float(rng.normal(0, 0.01)), i)
    for group in ((0, 1, 2), (3, 4, 5)):
        members = [e.bias_log for e in estimator.estimate() if int(e.plaza_id[1:]) in group]
        assert len(members) == 6
        assert float(np.median(members)) == pytest.approx(0.0, abs=0.01)


def test_evaluate_keeps_the_estimates_it_computed() -> None:
    estimator = ScaleBiasEstimator(network())
    feed(estimator, {"P1-entry": 0.05}, 600)
    estimator.evaluate(600_000)
    assert estimator.latest_estimates() == estimator.estimate()


def test_a_fit_computed_in_a_forked_child_raises_and_resolves_what_one_in_process_does() -> None:
    in_process, forked = ScaleBiasEstimator(network()), ScaleBiasEstimator(network())
    for estimator in (in_process, forked):
        feed(estimator, {"P3-exit": 0.04}, 1500)
    fitted = asyncio.run(fit_in_child(forked))
    assert fitted == in_process.estimate()
    assert forked.evaluate(1_500_000, fitted) == in_process.evaluate(1_500_000)
    assert forked.latest_estimates() == in_process.latest_estimates()
    for estimator in (in_process, forked):
        feed(estimator, {}, 3000, seed=1, start_ts=2_000_000)
    fitted = asyncio.run(fit_in_child(forked))
    [resolved] = forked.evaluate(5_000_000, fitted)
    assert [resolved] == in_process.evaluate(5_000_000)
    assert resolved.status == "resolved"
