"""`tollmon simulate` with approach detectors that miscount (SPEC §6: faults on request)."""

from __future__ import annotations

import itertools
import math

import pytest
import typer

from tollmon.cli import _parse_detector_fault
from tollmon.events import ApproachDetection, Event, LaneTransaction
from tollmon.network import Network
from tollmon.simulate import DetectorFault, TrafficProfile, generate

START_MS = 1_714_521_600_000


def traffic(network: Network, *faults: DetectorFault) -> list[Event]:
    profile = TrafficProfile(vehicles_per_hour=1200, detector_faults=faults)
    return list(generate(network, START_MS, 3600, profile, seed=8, plazas=["URC-E01", "URC-E02"]))


def counts(events: list[Event], plaza: str) -> tuple[int, int, int]:
    """Vehicles served, detections, detections without a plate."""
    served = sum(1 for e in events if isinstance(e, LaneTransaction) and e.plaza_id == plaza)
    # The counting detectors (D1): a loop farther up (D2) has no plates and no faults.
    detections = [
        e
        for e in events
        if isinstance(e, ApproachDetection) and e.plaza_id == plaza and e.detector_id.endswith("D1")
    ]
    return served, len(detections), sum(1 for d in detections if d.plate_hash is None)


def test_a_faulty_detector_misses_and_doubles_its_shares_of_the_vehicles(
    network: Network,
) -> None:
    faulty = traffic(network, DetectorFault("URC-E01", missed_ratio=0.05, double_ratio=0.10))

    served, detected, unplated = counts(faulty, "URC-E01")
    # 5 % missed and 10 % counted twice (the second count without a plate), each vehicle
    # by chance: within four binomial standard deviations.
    missed = served - (detected - unplated)
    assert abs(missed - 0.05 * served) <= 4 * math.sqrt(served * 0.05 * 0.95)
    assert abs(unplated - 0.10 * served) <= 4 * math.sqrt(served * 0.10 * 0.90)
    served, detected, unplated = counts(faulty, "URC-E02")
    assert (detected, unplated) == (served, 0)
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(faulty))


def test_the_command_line_takes_plaza_missed_and_doubled_shares() -> None:
    assert _parse_detector_fault("URC-W03=0,0.03") == DetectorFault("URC-W03", 0.0, 0.03)
    assert _parse_detector_fault("URC-W03=0.02") == DetectorFault("URC-W03", 0.02, 0.0)
    for bad in ("URC-W03", "=0.1,0.1", "URC-W03=a,b", "URC-W03=0.6,0.6", "URC-W03=-0.1,0"):
        with pytest.raises(typer.BadParameter):
            _parse_detector_fault(bad)
