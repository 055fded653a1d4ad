"""Time and peak memory of one scale-bias fit on a synthetic national network.

N standard plazas with 4 scales each (2 entry, 2 exit); every pair runs from an entry scale
of one random plaza to an exit scale of another, 200 pairs per scale as the window holds.
Usage: python benchmarks/scale_bias_fit.py 400 1600 6400 40000
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import numpy as np

from detectors.scale_bias import ScaleBiasConfig, ScaleBiasEstimator
from detectors.scales import ScaleInfo
from tollmon.events import Direction


def network(scales: int, seed: int = 1) -> ScaleBiasEstimator:
    """An estimator whose window holds a synthetic network of `scales` scales."""
    plazas = scales // 4
    infos = {}
    stations: tuple[Direction, ...] = ("entry", "entry", "exit", "exit")
    for p in range(plazas):
        for k, station in enumerate(stations):
            sid = f"P{p:05d}-S{k}"
            infos[sid] = ScaleInfo(
                scale_id=sid,
                plaza_id=f"P{p:05d}",
                lane_id=str(k),
                station=station,
                accuracy_class=0.5,
            )
    est = ScaleBiasEstimator(infos, ScaleBiasConfig())
    rng = np.random.default_rng(seed)
    bias = rng.normal(0.0, 0.005, plazas * 4)
    pairs = scales * 200 // 2
    a = rng.integers(0, plazas, pairs)
    b = (a + rng.integers(1, plazas, pairs)) % plazas
    e = a * 4 + rng.integers(0, 2, pairs)
    x = b * 4 + 2 + rng.integers(0, 2, pairs)
    y = bias[x] - bias[e] + rng.normal(0.0, 0.004, pairs)
    for i in range(pairs):
        est.add_observation(
            f"P{e[i] // 4:05d}-S{e[i] % 4}", f"P{x[i] // 4:05d}-S{x[i] % 4}", float(y[i]), 1_000 + i
        )
    return est


def main() -> None:
    for scales in (int(a) for a in sys.argv[1:]):
        est = network(scales)
        tracemalloc.start()
        start = time.perf_counter()
        est.estimate()
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{scales}\t{seconds:.2f} s\t{peak / 2**20:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
