"""`tollmon simulate` at approaches with more than one detector (SPEC §3: `detectors` list).

The sample network's URC-E01 entry has a counting loop (D2) 520 m beyond its detector (D1).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_backtest import lines_of
from tollmon.backtest import run_backtest
from tollmon.events import ApproachDetection, Event, LaneTransaction
from tollmon.network import Network, parse_network
from tollmon.simulate import Surge, TrafficProfile, generate

START_MS = 1_714_521_600_000
PLAZA = "URC-E01"
SAMPLE = Path(__file__).resolve().parents[2] / "config" / "network.yaml"


def without_far_loop() -> Network:
    """The sample network less the loop 520 m beyond URC-E01's entry detector."""
    data: dict[str, Any] = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    plaza = next(p for p in data["plazas"] if p["id"] == PLAZA)
    entry = plaza["directions"]["entry"]
    entry["detectors"] = [d for d in entry["detectors"] if d["id"] != "URC-E01-EN-D2"]
    return parse_network(data, "test")


def traffic(network: Network) -> list[Event]:
    profile = TrafficProfile(vehicles_per_hour=1200)
    return list(generate(network, START_MS, 1800, profile, seed=4, plazas=["URC-E01"]))


def test_every_vehicle_crosses_the_far_loop_first_by_its_free_flow_lead(network: Network) -> None:
    events = traffic(network)

    detections = [e for e in events if isinstance(e, ApproachDetection) and e.direction == "entry"]
    near = [e for e in detections if e.detector_id.endswith("D1")]
    far = [e for e in detections if e.detector_id.endswith("D2")]
    served = [e for e in events if isinstance(e, LaneTransaction) and e.direction == "entry"]
    assert len(far) == len(near) > 0
    assert abs(len(served) - len(near)) <= 20  # those still queued or on their way at the end
    # URC-E01's entry detectors, as configured in the sample: D1 14 s, D2 44 s from the barriers.
    lead_ms = (44.0 - 14.0) * 1000
    # Times are whole milliseconds, each truncated on its own.
    assert all(abs(n.ts - f.ts - lead_ms) <= 1 for f, n in zip(far, near, strict=True))
    assert all(f.plate_hash is None for f in far)
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))


def test_a_backtest_counts_each_vehicle_once_with_two_loops(network: Network) -> None:
    # Before, every configured detector's detections were counted: twice the vehicles.
    surge = Surge(PLAZA, 6.0, 300, 600, "entry")
    profile = TrafficProfile(vehicles_per_hour=900, surges=(surge,))
    events = list(generate(network, START_MS, 1500, profile, seed=2, plazas=[PLAZA]))
    near_only = [
        e for e in events if not (isinstance(e, ApproachDetection) and e.detector_id.endswith("D2"))
    ]

    both = run_backtest(network, lines_of(events)).estimates
    lone = run_backtest(without_far_loop(), lines_of(near_only)).estimates

    entry = {e.ts: e.queue_veh for e in both if e.direction == "entry"}
    lone_entry = {e.ts: e.queue_veh for e in lone if e.direction == "entry"}
    assert max(lone_entry.values()) >= 10
    # The simulated queue stands at the barriers (the detector is never inside it): the far
    # loop sees nothing behind the near one, so the estimate is the near one's. (It starts
    # earlier: the far loop's first vehicle comes before the near one's.)
    assert {ts: q for ts, q in entry.items() if ts in lone_entry} == lone_entry
