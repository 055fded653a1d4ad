"""Run the SUMO validation and write docs/validation/sumo.md with its plots.

Usage: python -m validation.sumo.run [--out docs/validation] [--work DIR] [--short]
                                     [--seeds 11 19]

The SUMO inputs and outputs go to a temporary directory unless --work names one to keep.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from validation.sumo.evaluate import FULL, SHORT, Evaluation, evaluate
from validation.sumo.report import write_report
from validation.sumo.score import Targets

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "validation"


def _evaluate_all(
    work: Path, short_only: bool, seeds: Sequence[int]
) -> tuple[list[Evaluation], list[Evaluation]]:
    scenarios = [SHORT] if short_only else [SHORT, FULL]
    evaluations = [evaluate(s, work / s.name) for s in scenarios]
    others = (
        []
        if short_only
        else [evaluate(replace(FULL, seed=seed), work / f"full-{seed}") for seed in seeds]
    )
    return evaluations, others


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate, score and write the report; print the headline numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--short", action="store_true", help="only the short scenario")
    parser.add_argument("--seeds", type=int, nargs="*", default=[11, 19, 23])
    args = parser.parse_args(argv)
    targets = Targets()
    with tempfile.TemporaryDirectory(prefix="tollmon-sumo-") as scratch:
        work = args.work or Path(scratch)
        evaluations, others = _evaluate_all(work, args.short, args.seeds)
        report = write_report(evaluations, others, args.out, targets)
    for ev in evaluations:
        for r in ev.results:
            s = r.scores
            missed = "; ".join(s.misses(targets)) or "all targets met"
            print(
                f"{ev.scenario.name:6s} {r.variant.name:14s} queue MAE {s.queue_mae_veh:6.2f} veh"
                f"  wait MAE {s.wait_mae_s:6.1f} s  onset delay {s.onset_delay_s}  {missed}"
            )
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
