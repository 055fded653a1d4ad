"""One scenario end to end: simulate, replay every estimator variant, score against the truth."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from validation.sumo.replay import (
    NO_FAULTS,
    DetectorFaults,
    EstimatorRun,
    approach_config,
    build_network,
    ms,
    run_estimator,
    to_events,
)
from validation.sumo.scenario import Phase, Scenario
from validation.sumo.score import HiddenSplit, Scores, Truth, hidden_split, score
from validation.sumo.simulate import FreeFlowTimes, SimulationResult, calibrate, simulate

SHORT = Scenario(
    "short",
    seed=7,
    phases=(Phase("free flow", 600, 900), Phase("surge", 480, 2500), Phase("recovery", 900, 700)),
)
FULL = Scenario(
    "full",
    seed=3,
    phases=(
        Phase("free flow", 1800, 900),
        Phase("surge", 900, 2200),
        Phase("recovery", 1800, 800),
    ),
)


@dataclass(frozen=True, slots=True)
class Variant:
    """How the estimator is set up and fed: what an operator could have deployed."""

    name: str
    description: str
    with_detector: bool = True
    configured_tau: bool = True
    plate_read_ratio: float | None = None
    # Overrides the configured approach lanes; 0 leaves them unset.
    queue_lanes: int | None = None
    faults: DetectorFaults = NO_FAULTS
    # A second counting loop farther upstream (D2), surveyed like the first, and its errors.
    with_upstream: bool = False
    upstream_faults: DetectorFaults = NO_FAULTS
    upstream_tau_surveyed: bool = True


# A loop detector's usual errors, one way at a time (both at once would partly cancel): a lane
# changer counted twice, a vehicle between loops missed.
DOUBLE_COUNTS = DetectorFaults(double_ratio=0.03)
MISSED = DetectorFaults(missed_ratio=0.03)


VARIANTS: tuple[Variant, ...] = (
    Variant("input_output", "detector with ANPR plates (90 % read), surveyed free_flow_s"),
    Variant("no_plates", "detector counts only (no plate hashes)", plate_read_ratio=0.0),
    Variant(
        "learned_tau", "as input_output, free_flow_s not configured (learned)", configured_tau=False
    ),
    Variant(
        "open_lanes",
        "as input_output, approach_lanes not configured (queue spread over the open lanes)",
        queue_lanes=0,
    ),
    Variant("headway", "no detector: transactions only (headway method)", with_detector=False),
    Variant(
        "double_counts",
        "as input_output, the detector counting 3 % of vehicles twice (no plate on the second)",
        faults=DOUBLE_COUNTS,
    ),
    Variant(
        "double_counts_no_plates",
        "as no_plates, the detector counting 3 % of vehicles twice",
        plate_read_ratio=0.0,
        faults=DOUBLE_COUNTS,
    ),
    Variant(
        "missed_no_plates",
        "as no_plates, the detector missing 3 % of vehicles",
        plate_read_ratio=0.0,
        faults=MISSED,
    ),
    Variant(
        "upstream_loop",
        "as input_output, plus a counting loop 500 m farther upstream (no plates)",
        with_upstream=True,
    ),
    Variant(
        "upstream_loop_no_plates",
        "as no_plates, plus the counting loop 500 m farther upstream",
        plate_read_ratio=0.0,
        with_upstream=True,
    ),
    Variant(
        "upstream_loop_learned_tau",
        "as upstream_loop, the far loop's free_flow_s not configured (its lag learned)",
        with_upstream=True,
        upstream_tau_surveyed=False,
    ),
    Variant(
        "upstream_loop_double_counts",
        "as upstream_loop, the far loop counting 3 % of vehicles twice",
        with_upstream=True,
        upstream_faults=DOUBLE_COUNTS,
    ),
    Variant(
        "upstream_loop_missed",
        "as upstream_loop, the far loop missing 3 % of vehicles",
        with_upstream=True,
        upstream_faults=MISSED,
    ),
)


@dataclass(frozen=True, slots=True)
class VariantResult:
    """One variant's outputs and scores against both truths."""

    variant: Variant
    run: EstimatorRun
    scores: Scores
    scores_detector_timed: Scores
    hidden: HiddenSplit


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One simulated scenario with every variant's results."""

    scenario: Scenario
    simulation: SimulationResult
    free_flow: FreeFlowTimes
    truth: Truth
    truth_detector_timed: Truth
    results: tuple[VariantResult, ...]

    def result(self, name: str) -> VariantResult:
        return next(r for r in self.results if r.variant.name == name)


def evaluate(
    scenario: Scenario, work: Path, variants: tuple[Variant, ...] = VARIANTS
) -> Evaluation:
    """Simulate the scenario in `work` and score each estimator variant."""
    free_flow = calibrate(work / "calibration", scenario.layout, scenario.step_s)
    simulation = simulate(scenario, work / scenario.name)
    truth = Truth.from_records(simulation.records, free_flow, from_detector=False)
    truth_detector = Truth.from_records(simulation.records, free_flow, from_detector=True)
    free_flow_until_s = scenario.phases[0].duration_s
    end_ms = ms(simulation.end_s) + 5_000
    results = []
    for variant in variants:
        tau = free_flow.detector_mean_s() if variant.configured_tau else None
        surveyed = variant.with_upstream and variant.upstream_tau_surveyed
        upstream_tau = free_flow.upstream_mean_s() if surveyed else None
        network = build_network(
            scenario.layout, tau, variant.with_detector, upstream_tau, variant.with_upstream
        )
        config = approach_config(network)
        if variant.queue_lanes is not None:
            config = replace(config, queue_lanes=variant.queue_lanes or None)
        read_ratio = (
            scenario.plate_read_ratio
            if variant.plate_read_ratio is None
            else variant.plate_read_ratio
        )
        events = to_events(
            simulation.records,
            scenario.seed,
            read_ratio,
            variant.with_detector,
            variant.faults,
            variant.with_upstream,
            variant.upstream_faults,
        )
        run = run_estimator(config, events, end_ms)
        scored = [
            score(
                run.estimates,
                run.alerts,
                t,
                config.thresholds,
                len(scenario.layout.booths),
                free_flow_until_s,
                seen,
            )
            for t, seen in ((truth, truth_detector), (truth_detector, None))
        ]
        split = hidden_split(run.estimates, truth, truth_detector)
        results.append(VariantResult(variant, run, scored[0], scored[1], split))
    return Evaluation(scenario, simulation, free_flow, truth, truth_detector, tuple(results))
