"""What one network-wide scale-bias fit costs, in time and memory, as the network grows.

The worker refreshes the fit (`detectors/scale_bias.py`) once a minute of event time,
inside its event loop, over every scale that has pairs: its cost decides how many plazas
one worker can carry. Measured here on the trip pairs of the standard load at a few small
network sizes, and extrapolated with a power law.
"""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

import msgspec
import numpy as np

from benchmarks.synthetic import TOPIC_WEIGHINGS, generate_load, standard_network
from detectors.scale_bias import ScaleBiasConfig, ScaleBiasEstimator
from detectors.weighing import WeighingRecord, WeighPair
from tollmon.events import WeighMeasurement
from tollmon.network import parse_network
from tollmon.weighing_flow import scale_infos

_weighing = msgspec.json.Decoder(WeighMeasurement)


@dataclass(frozen=True)
class FitCost:
    plazas: int
    scales: int  # scales with at least one pair: the size of the fit
    pairs: int
    seconds: float
    peak_bytes: int  # Python and numpy allocations during the fit


def measure(plazas: int, span_s: float = 90.0, seed: int = 5) -> FitCost:
    """One fit over the pairs of `span_s` seconds of the standard load of `plazas` plazas."""
    network = parse_network(standard_network(plazas), "standard")
    estimator = ScaleBiasEstimator(scale_infos(network), ScaleBiasConfig())
    entries: dict[str, WeighingRecord] = {}
    load = generate_load(plazas, 1_750_000_000_000, span_s, seed=seed)
    pairs = 0
    scales: set[str] = set()
    for raw, topic in zip(load.values, load.topic, strict=True):
        if topic != TOPIC_WEIGHINGS:
            continue
        w = _weighing.decode(raw)
        record = WeighingRecord.of(w)
        if w.station == "entry":
            entries[w.pass_id] = record
        elif (entry := entries.pop(w.pass_id, None)) is not None:
            estimator.add_pair(WeighPair(pass_id=w.pass_id, entry=entry, exit=record))
            scales.update((entry.scale_id, record.scale_id))
            pairs += 1
    tracemalloc.start()
    started = time.perf_counter()
    estimator.estimate()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return FitCost(plazas, len(scales), pairs, seconds, peak)


def power_law(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(a, k) of y = a * x**k, least squares in log-log."""
    x = np.log([p[0] for p in points])
    y = np.log([p[1] for p in points])
    k, log_a = np.polyfit(x, y, 1)
    return float(np.exp(log_a)), float(k)
