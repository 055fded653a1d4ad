"""Seeded truck trips between plazas: entry and exit weighings with their transactions.

Each trip enters at one plaza's entry scale and leaves through another plaza's
exit scale, so entry/exit pairing, discrepancies, admitted overloads and scale
biases can be exercised. Scale noise follows each scale's accuracy class (the
in-motion MPE taken as two standard deviations); biased scales read
`(1 + bias) ×` the true mass.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tollmon.events import Event, LaneTransaction, WeighMeasurement
from tollmon.network import Network, ScaleSite

_LIMIT_KG = {2: 18_000, 3: 25_000, 4: 31_000, 5: 43_000, 6: 49_000}


@dataclass(frozen=True)
class TripProfile:
    """Trip demand and faults; shares are fractions of all trips."""

    trips_per_hour: float = 600.0
    scale_bias: dict[str, float] = field(default_factory=dict)  # scale id -> bias ratio
    load_change_share: float = 0.02  # genuine load changes (heavy-tailed)
    overload_admitted_share: float = 0.0  # overweight at entry and still admitted
    axle_change_share: float = 0.0
    travel_min_s: float = 1_200.0
    travel_max_s: float = 7_200.0


def generate_trips(
    network: Network, start_ms: int, duration_s: float, profile: TripProfile, seed: int = 0
) -> Iterator[Event]:
    """Every trip's events over `duration_s` of entries, in event-time order."""
    rng = np.random.default_rng(seed)
    entries = [s for s in network.scale_sites if s.direction == "entry"]
    exits = [s for s in network.scale_sites if s.direction == "exit"]
    if not entries or not exits:
        return
    tag = np.base_repr(start_ms, 36).lower()
    heap: list[tuple[int, int, Event]] = []
    seq = 0
    t = 0.0
    trip = 0
    while True:
        t += float(rng.exponential(3600.0 / profile.trips_per_hour))
        if t >= duration_s:
            break
        trip += 1
        for event in _trip(rng, profile, entries, exits, start_ms + int(t * 1000), trip, tag):
            seq += 1
            heapq.heappush(heap, (event.ts, seq, event))
        while heap and heap[0][0] <= start_ms + int(t * 1000):
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def _trip(
    rng: np.random.Generator,
    profile: TripProfile,
    entries: list[ScaleSite],
    exits: list[ScaleSite],
    entry_ms: int,
    trip: int,
    tag: str,
) -> list[Event]:
    entry = entries[int(rng.integers(len(entries)))]
    exit_ = exits[int(rng.integers(len(exits)))]
    while exit_.plaza_id == entry.plaza_id and len({s.plaza_id for s in exits}) > 1:
        exit_ = exits[int(rng.integers(len(exits)))]
    axles = int(rng.integers(2, 7))
    limit = _LIMIT_KG[axles]
    overloaded = rng.random() < profile.overload_admitted_share
    true_kg = limit * (rng.uniform(1.12, 1.35) if overloaded else rng.uniform(0.45, 0.92))
    exit_kg = true_kg
    if rng.random() < profile.load_change_share:
        # Genuine changes: mostly small, sometimes a whole pallet (heavy-tailed).
        exit_kg *= 1 + float(rng.standard_t(2)) * 0.03
    exit_axles = axles
    if rng.random() < profile.axle_change_share:
        exit_axles = axles + 1 if axles < 6 else axles - 1
    pass_id = f"trip{trip}.{tag}"
    plate = f"{rng.integers(0, 2**63):016x}"
    vclass = f"H{min(axles, 6)}"
    exit_ms = entry_ms + int(rng.uniform(profile.travel_min_s, profile.travel_max_s) * 1000)
    return [
        _weighing(rng, profile, entry, entry_ms, pass_id, plate, axles, true_kg),
        _transaction(entry, entry_ms + 4_000, pass_id, plate, vclass, axles),
        _weighing(rng, profile, exit_, exit_ms, pass_id, plate, exit_axles, exit_kg),
        _transaction(exit_, exit_ms + 4_000, pass_id, plate, vclass, exit_axles),
    ]


def _weighing(
    rng: np.random.Generator,
    profile: TripProfile,
    scale: ScaleSite,
    ts: int,
    pass_id: str,
    plate: str,
    axles: int,
    true_kg: float,
) -> WeighMeasurement:
    sigma = scale.mpe_ratio / 2
    reading = true_kg * (1 + profile.scale_bias.get(scale.scale_id, 0.0))
    reading *= 1 + float(rng.normal(0, sigma))
    return WeighMeasurement(
        event_id=f"w{scale.direction[:2]}.{pass_id}",
        ts=ts,
        plaza_id=scale.plaza_id,
        scale_id=scale.scale_id,
        station=scale.direction,
        lane_id=scale.lane_id,
        pass_id=pass_id,
        plate_hash=plate,
        axles=axles,
        gross_kg=int(np.clip(reading, 500, 200_000)),
    )


def _transaction(
    scale: ScaleSite, ts: int, pass_id: str, plate: str, vclass: str, axles: int
) -> LaneTransaction:
    return LaneTransaction(
        event_id=f"t{scale.direction[:2]}.{pass_id}",
        ts=ts,
        plaza_id=scale.plaza_id,
        lane_id=scale.lane_id,
        direction=scale.direction,
        payment="MTC",
        result="OK",
        vehicle_class=vclass,
        axles=axles,
        pass_id=pass_id,
        plate_hash=plate,
        service_ms=14_000,
    )
